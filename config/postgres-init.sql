-- Run once by the postgres image when config/docker-compose.yml first creates its database
-- (mounted into /docker-entrypoint-initdb.d). pgvector is not a trusted extension, so a role without superuser
-- cannot create it later; creating it here lets CREATE EXTENSION pgml through the proxy use vector columns for
-- any role. The catalog would create it itself when connected as a superuser, as the compose file does.
CREATE EXTENSION IF NOT EXISTS vector;
