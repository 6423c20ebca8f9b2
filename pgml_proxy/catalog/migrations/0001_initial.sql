-- pgml-proxy catalog, version 1: the PostgresML 2.10 catalog (contract §3) and the helpers that run inside
-- PostgreSQL itself (§2.5 metric helpers, §2.6 vector functions and aggregates, §2.7 auto_updated_at and
-- set_updated_at).
--
-- Every statement tolerates the objects it makes being there already (IF NOT EXISTS, OR REPLACE, guarded
-- DO blocks), so the same text also adopts a catalog that PostgresML created. The proxy runs it once per
-- database (pgml.proxy_catalog records that) inside a DO block with client_min_messages at WARNING, so the
-- "already exists, skipping" notices of an adoption stay quiet. Released migrations never change: a change
-- to the catalog is a new file with the next number.

-- Enum types (§3.3), labels in declaration order. On a catalog PostgresML made, missing labels are added
-- next to their neighbours and labels this list lacks (`agglomerative`, `text-pair-classification` on
-- upgraded installs) stay.
DO $enums$
DECLARE
    wanted record;
    label text;
    previous text;
BEGIN
    FOR wanted IN
        SELECT * FROM (VALUES
            ('task', ARRAY['regression', 'classification', 'decomposition', 'clustering', 'question_answering',
                'summarization', 'translation', 'text_classification', 'text_generation', 'text2text',
                'embedding', 'text_pair_classification', 'conversation']),
            ('algorithm', ARRAY['linear', 'xgboost', 'xgboost_random_forest', 'svm', 'lasso', 'elastic_net',
                'ridge', 'kmeans', 'dbscan', 'knn', 'random_forest', 'least_angle', 'lasso_least_angle',
                'orthogonal_matching_pursuit', 'bayesian_ridge', 'automatic_relevance_determination',
                'stochastic_gradient_descent', 'perceptron', 'passive_aggressive', 'ransac', 'theil_sen',
                'huber', 'quantile', 'kernel_ridge', 'gaussian_process', 'nu_svm', 'ada_boost', 'bagging',
                'extra_trees', 'gradient_boosting_trees', 'hist_gradient_boosting', 'linear_svm', 'lightgbm',
                'transformers', 'affinity_propagation', 'birch', 'feature_agglomeration', 'mini_batch_kmeans',
                'mean_shift', 'optics', 'spectral', 'spectral_bi', 'spectral_co', 'catboost', 'pca']),
            ('runtime', ARRAY['python', 'rust', 'openai']),
            ('strategy', ARRAY['new_score', 'best_score', 'most_recent', 'rollback', 'specific']),
            ('sampling', ARRAY['random', 'last', 'stratified']),
            ('search', ARRAY['grid', 'random']),
            ('status', ARRAY['in_progress', 'successful', 'failed'])
        ) AS t(name, labels)
    LOOP
        IF to_regtype('pgml.' || quote_ident(wanted.name)) IS NULL THEN
            EXECUTE format('CREATE TYPE pgml.%I AS ENUM (%s)', wanted.name,
                array_to_string(ARRAY(SELECT quote_literal(l) FROM unnest(wanted.labels) AS l), ', '));
            CONTINUE;
        END IF;
        previous := NULL;
        FOREACH label IN ARRAY wanted.labels LOOP
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_enum
                           WHERE enumtypid = ('pgml.' || quote_ident(wanted.name))::regtype AND enumlabel = label) THEN
                IF previous IS NULL THEN
                    EXECUTE format('ALTER TYPE pgml.%I ADD VALUE IF NOT EXISTS %L', wanted.name, label);
                ELSE
                    EXECUTE format('ALTER TYPE pgml.%I ADD VALUE IF NOT EXISTS %L AFTER %L', wanted.name, label, previous);
                END IF;
            END IF;
            previous := label;
        END LOOP;
    END LOOP;
END
$enums$;

-- updated_at maintenance (§2.7).
CREATE OR REPLACE FUNCTION pgml.set_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
BEGIN
    -- pgml.deployments carries this trigger but has no updated_at column (§3.1); PostgresML's version fails
    -- on any UPDATE of it, this one leaves such rows alone.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute
                   WHERE attrelid = TG_RELID AND attname = 'updated_at' AND attnum > 0 AND NOT attisdropped) THEN
        RETURN NEW;
    END IF;
    -- An UPDATE that sets updated_at itself keeps its value.
    IF NEW IS DISTINCT FROM OLD AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$fn$;

CREATE OR REPLACE FUNCTION pgml.auto_updated_at(tbl regclass) RETURNS void
    LANGUAGE plpgsql AS $fn$
DECLARE
    trigger_name text := (SELECT relname FROM pg_catalog.pg_class WHERE oid = tbl) || '_auto_updated_at';
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', trigger_name, tbl);
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION pgml.set_updated_at()',
        trigger_name, tbl);
END
$fn$;

-- Tables (§3.1). Keys, index and constraint names are PostgresML's.
CREATE TABLE IF NOT EXISTS pgml.projects (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    task pgml.task NOT NULL,
    created_at timestamp without time zone NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamp without time zone NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX IF NOT EXISTS projects_name_idx ON pgml.projects (name);
SELECT pgml.auto_updated_at('pgml.projects');

CREATE TABLE IF NOT EXISTS pgml.snapshots (
    id bigserial PRIMARY KEY,
    relation_name text NOT NULL,
    y_column_name text[],
    test_size real NOT NULL,
    test_sampling pgml.sampling NOT NULL,
    status text NOT NULL,
    columns jsonb,
    analysis jsonb,
    created_at timestamp without time zone NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamp without time zone NOT NULL DEFAULT clock_timestamp(),
    materialized boolean DEFAULT false
);
-- Older PostgresML catalogs declare it NOT NULL; unsupervised snapshots have no label column.
ALTER TABLE pgml.snapshots ALTER COLUMN y_column_name DROP NOT NULL;
SELECT pgml.auto_updated_at('pgml.snapshots');

CREATE TABLE IF NOT EXISTS pgml.models (
    id bigserial PRIMARY KEY,
    project_id bigint NOT NULL,
    snapshot_id bigint,
    num_features integer NOT NULL,
    algorithm text NOT NULL,
    runtime pgml.runtime DEFAULT 'python',
    hyperparams jsonb NOT NULL,
    status text NOT NULL,
    metrics jsonb,
    search text,
    search_params jsonb NOT NULL,
    search_args jsonb NOT NULL,
    created_at timestamp without time zone NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamp without time zone NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT project_id_fk FOREIGN KEY (project_id) REFERENCES pgml.projects (id) ON DELETE CASCADE,
    CONSTRAINT snapshot_id_fk FOREIGN KEY (snapshot_id) REFERENCES pgml.snapshots (id) ON DELETE SET NULL
);
-- Older PostgresML catalogs declare it NOT NULL, which its own ON DELETE SET NULL contradicts.
ALTER TABLE pgml.models ALTER COLUMN snapshot_id DROP NOT NULL;
CREATE INDEX IF NOT EXISTS models_project_id_idx ON pgml.models (project_id);
CREATE INDEX IF NOT EXISTS models_snapshot_id_idx ON pgml.models (snapshot_id);
SELECT pgml.auto_updated_at('pgml.models');

CREATE TABLE IF NOT EXISTS pgml.deployments (
    id bigserial PRIMARY KEY,
    project_id bigint NOT NULL,
    model_id bigint NOT NULL,
    strategy pgml.strategy NOT NULL,
    created_at timestamp without time zone NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT project_id_fk FOREIGN KEY (project_id) REFERENCES pgml.projects (id) ON DELETE CASCADE,
    CONSTRAINT model_id_fk FOREIGN KEY (model_id) REFERENCES pgml.models (id) ON DELETE CASCADE
);
-- A project's current deployment is its newest row: this index (PostgresML's name; PostgresML indexes
-- project_id alone) answers that lookup, which every prediction makes, without a sort.
CREATE INDEX IF NOT EXISTS deployments_project_id_created_at_idx ON pgml.deployments (project_id, created_at);
CREATE INDEX IF NOT EXISTS deployments_model_id_created_at_idx ON pgml.deployments (model_id);
-- The contract keeps PostgresML's trigger here although the table has no updated_at (see set_updated_at).
SELECT pgml.auto_updated_at('pgml.deployments');

CREATE TABLE IF NOT EXISTS pgml.files (
    id bigserial PRIMARY KEY,
    model_id bigint NOT NULL,
    path text NOT NULL,
    part integer NOT NULL,
    created_at timestamp without time zone NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamp without time zone NOT NULL DEFAULT clock_timestamp(),
    data bytea NOT NULL,
    CONSTRAINT model_id_fk FOREIGN KEY (model_id) REFERENCES pgml.models (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS files_model_id_path_part_idx ON pgml.files (model_id, path, part);
SELECT pgml.auto_updated_at('pgml.files');

-- PostgresML creates it only on upgraded installs (contract §7.2 #10): always here.
CREATE TABLE IF NOT EXISTS pgml.logs (
    id serial PRIMARY KEY,
    model_id bigint,
    project_id bigint,
    created_at timestamp DEFAULT current_timestamp,
    logs jsonb
);

-- Views (§3.2). CREATE OR REPLACE rather than PostgresML's DROP + CREATE: adopting a catalog then keeps
-- the user's views built on these. A project's current deployment is its newest row (ties: highest id).
CREATE OR REPLACE VIEW pgml.overview AS
SELECT
    p.name,
    d.created_at AS deployed_at,
    p.task,
    m.algorithm,
    m.runtime,
    s.relation_name,
    s.y_column_name,
    s.test_sampling,
    s.test_size
FROM pgml.projects p
INNER JOIN pgml.models m ON p.id = m.project_id
INNER JOIN pgml.deployments d ON d.project_id = p.id AND d.model_id = m.id
INNER JOIN pgml.snapshots s ON s.id = m.snapshot_id
ORDER BY d.created_at DESC, d.id DESC;

CREATE OR REPLACE VIEW pgml.trained_models AS
SELECT
    m.id,
    p.name,
    p.task,
    m.algorithm,
    m.runtime,
    m.created_at,
    s.test_sampling,
    s.test_size,
    d.model_id IS NOT NULL AS deployed
FROM pgml.projects p
INNER JOIN pgml.models m ON p.id = m.project_id
INNER JOIN pgml.snapshots s ON s.id = m.snapshot_id
LEFT JOIN (
    SELECT DISTINCT ON (project_id) project_id, model_id, created_at
    FROM pgml.deployments
    ORDER BY project_id, created_at DESC, id DESC
) d ON d.model_id = m.id
ORDER BY m.created_at DESC, m.id DESC;

CREATE OR REPLACE VIEW pgml.deployed_models AS
SELECT
    m.id,
    p.name,
    p.task,
    m.algorithm,
    m.runtime,
    d.created_at AS deployed_at
FROM pgml.projects p
INNER JOIN (
    SELECT DISTINCT ON (project_id) project_id, model_id, created_at
    FROM pgml.deployments
    ORDER BY project_id, created_at DESC, id DESC
) d ON d.project_id = p.id
INNER JOIN pgml.models m ON m.id = d.model_id
ORDER BY p.name ASC;

-- Vector functions (§2.6): a real[] and a double precision[] overload of each, all IMMUTABLE STRICT
-- PARALLEL SAFE; parameter names are PostgresML's (`subtahend` sic). A NULL element is an ERROR, as in
-- PostgresML. Float4 sums accumulate in float8. Division follows IEEE (x/0 is ±Infinity or NaN, as in
-- PostgresML) where Postgres itself would raise. array_agg over unnest keeps the array order: a function
-- scan feeds the aggregate in order (an ORDER BY i would cost a sort per call, about a third of the time).

-- Element-wise arithmetic with a scalar and with another array (pairs up to the shorter array).
CREATE OR REPLACE FUNCTION pgml.add(vector real[], addend real) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
BEGIN
    SELECT array_agg(a + addend), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.add: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.add(vector double precision[], addend double precision) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
BEGIN
    SELECT array_agg(a + addend), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.add: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.add(vector real[], addend real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(addend));
BEGIN
    SELECT array_agg(a + b) FILTER (WHERE i <= n),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(addend)))
      INTO result, nulls FROM unnest(vector, addend) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.add: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.add(vector double precision[], addend double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(addend));
BEGIN
    SELECT array_agg(a + b) FILTER (WHERE i <= n),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(addend)))
      INTO result, nulls FROM unnest(vector, addend) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.add: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.subtract(vector real[], subtahend real) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
BEGIN
    SELECT array_agg(a - subtahend), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.subtract: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.subtract(vector double precision[], subtahend double precision) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
BEGIN
    SELECT array_agg(a - subtahend), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.subtract: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.subtract(vector real[], subtrahend real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(subtrahend));
BEGIN
    SELECT array_agg(a - b) FILTER (WHERE i <= n),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(subtrahend)))
      INTO result, nulls FROM unnest(vector, subtrahend) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.subtract: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.subtract(vector double precision[], subtrahend double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(subtrahend));
BEGIN
    SELECT array_agg(a - b) FILTER (WHERE i <= n),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(subtrahend)))
      INTO result, nulls FROM unnest(vector, subtrahend) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.subtract: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.multiply(vector real[], multiplicand real) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
BEGIN
    SELECT array_agg(a * multiplicand), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.multiply: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.multiply(vector double precision[], multiplicand double precision) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
BEGIN
    SELECT array_agg(a * multiplicand), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.multiply: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.multiply(vector real[], multiplicand real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(multiplicand));
BEGIN
    SELECT array_agg(a * b) FILTER (WHERE i <= n),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(multiplicand)))
      INTO result, nulls FROM unnest(vector, multiplicand) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.multiply: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.multiply(vector double precision[], multiplicand double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(multiplicand));
BEGIN
    SELECT array_agg(a * b) FILTER (WHERE i <= n),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(multiplicand)))
      INTO result, nulls FROM unnest(vector, multiplicand) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.multiply: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.divide(vector real[], dividend real) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
BEGIN
    SELECT array_agg(CASE WHEN dividend <> 0 THEN a / dividend WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.divide: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.divide(vector double precision[], dividend double precision) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
BEGIN
    SELECT array_agg(CASE WHEN dividend <> 0 THEN a / dividend WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.divide: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.divide(vector real[], dividend real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(dividend));
BEGIN
    SELECT array_agg(CASE WHEN b <> 0 THEN a / b WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END) FILTER (WHERE i <= n),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(dividend)))
      INTO result, nulls FROM unnest(vector, dividend) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.divide: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.divide(vector double precision[], dividend double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(dividend));
BEGIN
    SELECT array_agg(CASE WHEN b <> 0 THEN a / b WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END) FILTER (WHERE i <= n),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(dividend)))
      INTO result, nulls FROM unnest(vector, dividend) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.divide: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;

-- Norms (0 for an empty array).
CREATE OR REPLACE FUNCTION pgml.norm_l0(vector real[]) RETURNS real
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real;
    nulls bigint;
BEGIN
    SELECT count(*) FILTER (WHERE a <> 0), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.norm_l0: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.norm_l0(vector double precision[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision;
    nulls bigint;
BEGIN
    SELECT count(*) FILTER (WHERE a <> 0), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.norm_l0: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.norm_l1(vector real[]) RETURNS real
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real;
    nulls bigint;
BEGIN
    SELECT coalesce(sum(abs(a::double precision)), 0), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.norm_l1: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.norm_l1(vector double precision[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision;
    nulls bigint;
BEGIN
    SELECT coalesce(sum(abs(a)), 0), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.norm_l1: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.norm_l2(vector real[]) RETURNS real
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real;
    nulls bigint;
BEGIN
    SELECT sqrt(coalesce(sum(a::double precision * a), 0)), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.norm_l2: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.norm_l2(vector double precision[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision;
    nulls bigint;
BEGIN
    SELECT sqrt(coalesce(sum(a * a), 0)), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.norm_l2: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.norm_max(vector real[]) RETURNS real
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real;
    nulls bigint;
BEGIN
    SELECT coalesce(max(abs(a)), 0), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.norm_max: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.norm_max(vector double precision[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision;
    nulls bigint;
BEGIN
    SELECT coalesce(max(abs(a)), 0), count(*) FILTER (WHERE a IS NULL)
      INTO result, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.norm_max: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;

-- The vector divided by its norm (a zero vector gives NaN elements, as 0/0 does in PostgresML).
CREATE OR REPLACE FUNCTION pgml.normalize_l1(vector real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    norm real;
    result real[];
    nulls bigint;
BEGIN
    SELECT coalesce(sum(abs(a::double precision)), 0), count(*) FILTER (WHERE a IS NULL)
      INTO norm, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.normalize_l1: array contains NULL elements';
    END IF;
    SELECT array_agg(CASE WHEN norm <> 0 THEN a / norm WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END) INTO result FROM unnest(vector) AS e(a);
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.normalize_l1(vector double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    norm double precision;
    result double precision[];
    nulls bigint;
BEGIN
    SELECT coalesce(sum(abs(a)), 0), count(*) FILTER (WHERE a IS NULL)
      INTO norm, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.normalize_l1: array contains NULL elements';
    END IF;
    SELECT array_agg(CASE WHEN norm <> 0 THEN a / norm WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END) INTO result FROM unnest(vector) AS e(a);
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.normalize_l2(vector real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    norm real;
    result real[];
    nulls bigint;
BEGIN
    SELECT sqrt(coalesce(sum(a::double precision * a), 0)), count(*) FILTER (WHERE a IS NULL)
      INTO norm, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.normalize_l2: array contains NULL elements';
    END IF;
    SELECT array_agg(CASE WHEN norm <> 0 THEN a / norm WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END) INTO result FROM unnest(vector) AS e(a);
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.normalize_l2(vector double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    norm double precision;
    result double precision[];
    nulls bigint;
BEGIN
    SELECT sqrt(coalesce(sum(a * a), 0)), count(*) FILTER (WHERE a IS NULL)
      INTO norm, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.normalize_l2: array contains NULL elements';
    END IF;
    SELECT array_agg(CASE WHEN norm <> 0 THEN a / norm WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END) INTO result FROM unnest(vector) AS e(a);
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.normalize_max(vector real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    norm real;
    result real[];
    nulls bigint;
BEGIN
    SELECT coalesce(max(abs(a)), 0), count(*) FILTER (WHERE a IS NULL)
      INTO norm, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.normalize_max: array contains NULL elements';
    END IF;
    SELECT array_agg(CASE WHEN norm <> 0 THEN a / norm WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END) INTO result FROM unnest(vector) AS e(a);
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.normalize_max(vector double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    norm double precision;
    result double precision[];
    nulls bigint;
BEGIN
    SELECT coalesce(max(abs(a)), 0), count(*) FILTER (WHERE a IS NULL)
      INTO norm, nulls FROM unnest(vector) AS e(a);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.normalize_max: array contains NULL elements';
    END IF;
    SELECT array_agg(CASE WHEN norm <> 0 THEN a / norm WHEN a = 0 OR a = 'NaN' THEN 'NaN' WHEN a > 0 THEN 'Infinity' ELSE '-Infinity' END) INTO result FROM unnest(vector) AS e(a);
    RETURN coalesce(result, '{}');
END
$fn$;

-- Distances pair elements up to the shorter array (PostgresML does, keep); dot_product and
-- cosine_similarity reject unequal lengths (PostgresML reads past the shorter one: contract §7.2 #18).
CREATE OR REPLACE FUNCTION pgml.distance_l1(vector real[], other real[]) RETURNS real
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real;
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(other));
BEGIN
    SELECT coalesce(sum(abs(a::double precision - b)) FILTER (WHERE i <= n), 0),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(other)))
      INTO result, nulls FROM unnest(vector, other) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.distance_l1: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.distance_l1(vector double precision[], other double precision[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision;
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(other));
BEGIN
    SELECT coalesce(sum(abs(a - b)) FILTER (WHERE i <= n), 0),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(other)))
      INTO result, nulls FROM unnest(vector, other) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.distance_l1: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.distance_l2(vector real[], other real[]) RETURNS real
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real;
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(other));
BEGIN
    SELECT sqrt(coalesce(sum((a::double precision - b) * (a::double precision - b)) FILTER (WHERE i <= n), 0)),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(other)))
      INTO result, nulls FROM unnest(vector, other) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.distance_l2: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.distance_l2(vector double precision[], other double precision[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision;
    nulls bigint;
    n bigint := least(cardinality(vector), cardinality(other));
BEGIN
    SELECT sqrt(coalesce(sum((a - b) * (a - b)) FILTER (WHERE i <= n), 0)),
           count(*) FILTER (WHERE (a IS NULL AND i <= cardinality(vector)) OR (b IS NULL AND i <= cardinality(other)))
      INTO result, nulls FROM unnest(vector, other) WITH ORDINALITY AS e(a, b, i);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.distance_l2: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.dot_product(vector real[], other real[]) RETURNS real
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result real;
    nulls bigint;
BEGIN
    IF cardinality(vector) <> cardinality(other) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.dot_product: different vector dimensions %s and %s', cardinality(vector), cardinality(other));
    END IF;
    SELECT coalesce(sum(a::double precision * b), 0), count(*) FILTER (WHERE a IS NULL OR b IS NULL)
      INTO result, nulls FROM unnest(vector, other) AS e(a, b);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.dot_product: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.dot_product(vector double precision[], other double precision[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    result double precision;
    nulls bigint;
BEGIN
    IF cardinality(vector) <> cardinality(other) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.dot_product: different vector dimensions %s and %s', cardinality(vector), cardinality(other));
    END IF;
    SELECT coalesce(sum(a * b), 0), count(*) FILTER (WHERE a IS NULL OR b IS NULL)
      INTO result, nulls FROM unnest(vector, other) AS e(a, b);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.dot_product: array contains NULL elements';
    END IF;
    RETURN result;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.cosine_similarity(vector real[], other real[]) RETURNS real
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    dot double precision;
    squares double precision;
    nulls bigint;
BEGIN
    IF cardinality(vector) <> cardinality(other) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.cosine_similarity: different vector dimensions %s and %s', cardinality(vector), cardinality(other));
    END IF;
    SELECT coalesce(sum(a::double precision * b), 0), coalesce(sum(a::double precision * a), 0) * coalesce(sum(b::double precision * b), 0),
           count(*) FILTER (WHERE a IS NULL OR b IS NULL)
      INTO dot, squares, nulls FROM unnest(vector, other) AS e(a, b);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.cosine_similarity: array contains NULL elements';
    END IF;
    RETURN CASE WHEN sqrt(squares) <> 0 THEN dot / sqrt(squares) WHEN dot = 0 OR dot = 'NaN' THEN 'NaN' WHEN dot > 0 THEN 'Infinity' ELSE '-Infinity' END;
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.cosine_similarity(vector double precision[], other double precision[]) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    dot double precision;
    squares double precision;
    nulls bigint;
BEGIN
    IF cardinality(vector) <> cardinality(other) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.cosine_similarity: different vector dimensions %s and %s', cardinality(vector), cardinality(other));
    END IF;
    SELECT coalesce(sum(a * b), 0), coalesce(sum(a * a), 0) * coalesce(sum(b * b), 0),
           count(*) FILTER (WHERE a IS NULL OR b IS NULL)
      INTO dot, squares, nulls FROM unnest(vector, other) AS e(a, b);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.cosine_similarity: array contains NULL elements';
    END IF;
    RETURN CASE WHEN sqrt(squares) <> 0 THEN dot / sqrt(squares) WHEN dot = 0 OR dot = 'NaN' THEN 'NaN' WHEN dot > 0 THEN 'Infinity' ELSE '-Infinity' END;
END
$fn$;

-- Aggregates over rows of arrays, position by position. The state functions are not strict so the
-- first row is checked like the others; they also serve as combine functions (parallel aggregation).
-- Rows of different lengths are an ERROR (PostgresML reads past the shorter one).
CREATE OR REPLACE FUNCTION pgml.vector_sum_state(state real[], vector real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, array_fill(NULL::real, ARRAY[cardinality(vector)]));
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.sum: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(coalesce(s, 0) + v), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.sum: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.vector_sum_state(state double precision[], vector double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, array_fill(NULL::double precision, ARRAY[cardinality(vector)]));
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.sum: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(coalesce(s, 0) + v), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.sum: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.vector_max_state(state real[], vector real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, vector);
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.max: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(greatest(s, v)), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.max: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.vector_max_state(state double precision[], vector double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, vector);
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.max: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(greatest(s, v)), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.max: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.vector_min_state(state real[], vector real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, vector);
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.min: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(least(s, v)), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.min: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.vector_min_state(state double precision[], vector double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, vector);
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.min: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(least(s, v)), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.min: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.vector_max_abs_state(state real[], vector real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, vector);
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.max_abs: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(greatest(abs(s), abs(v))), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.max_abs: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.vector_max_abs_state(state double precision[], vector double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, vector);
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.max_abs: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(greatest(abs(s), abs(v))), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.max_abs: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.vector_min_abs_state(state real[], vector real[]) RETURNS real[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result real[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, vector);
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.min_abs: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(least(abs(s), abs(v))), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.min_abs: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;
CREATE OR REPLACE FUNCTION pgml.vector_min_abs_state(state double precision[], vector double precision[]) RETURNS double precision[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $fn$
DECLARE
    result double precision[];
    nulls bigint;
BEGIN
    IF vector IS NULL THEN
        RETURN state;
    END IF;
    state := coalesce(state, vector);
    IF cardinality(state) <> cardinality(vector) THEN
        RAISE EXCEPTION USING ERRCODE = '22000',
            MESSAGE = format('pgml.min_abs: different vector dimensions %s and %s', cardinality(state), cardinality(vector));
    END IF;
    SELECT array_agg(least(abs(s), abs(v))), count(*) FILTER (WHERE v IS NULL)
      INTO result, nulls FROM unnest(state, vector) AS e(s, v);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgml.min_abs: array contains NULL elements';
    END IF;
    RETURN coalesce(result, '{}');
END
$fn$;

-- The aggregates (§2.6): NULL rows are skipped, all rows NULL gives NULL. A catalog PostgresML made has
-- them with its own support functions and perhaps other parameter names, which CREATE OR REPLACE cannot
-- change: such an aggregate is dropped and made again.
DO $aggregates$
DECLARE
    aggregate record;
    definition text;
BEGIN
    FOR aggregate IN
        SELECT name, type
        FROM unnest(ARRAY['sum', 'max', 'min', 'max_abs', 'min_abs']) AS n(name),
             unnest(ARRAY['real[]', 'double precision[]']) AS t(type)
    LOOP
        definition := format(
            'CREATE OR REPLACE AGGREGATE pgml.%1$I(vector %2$s) '
            '(SFUNC = pgml.%3$I, STYPE = %2$s, COMBINEFUNC = pgml.%3$I, PARALLEL = SAFE)',
            aggregate.name, aggregate.type, 'vector_' || aggregate.name || '_state');
        BEGIN
            EXECUTE definition;
        EXCEPTION WHEN invalid_function_definition THEN
            EXECUTE format('DROP AGGREGATE pgml.%I(%s)', aggregate.name, aggregate.type);
            EXECUTE definition;
        END;
    END LOOP;
END
$aggregates$;

-- Metric helpers (§2.5): scikit-learn's values (computed in float8, returned as float4 as PostgresML
-- does), in SQL so they run wherever the catalog is. Arrays of different lengths, empty arrays and NULL
-- elements are an ERROR, as in scikit-learn.
CREATE OR REPLACE FUNCTION pgml.sklearn_regression_metrics(ground_truth real[], y_hat real[]) RETURNS jsonb
    LANGUAGE plpgsql VOLATILE STRICT AS $fn$
DECLARE
    n bigint := cardinality(ground_truth);
    residual_squares double precision;
    total_squares double precision;
    absolute double precision;
    nulls bigint;
    r2 double precision;
BEGIN
    IF n <> cardinality(y_hat) OR n = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('ground_truth and y_hat need the same number of elements, at least one (got %s and %s)',
                n, cardinality(y_hat));
    END IF;
    SELECT sum((t::double precision - p) ^ 2), sum(abs(t::double precision - p)),
           count(*) FILTER (WHERE t IS NULL OR p IS NULL)
      INTO residual_squares, absolute, nulls FROM unnest(ground_truth, y_hat) AS e(t, p);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'ground_truth and y_hat must not contain NULL elements';
    END IF;
    SELECT sum((t - mean) ^ 2) INTO total_squares
      FROM unnest(ground_truth) AS e(t), (SELECT avg(t::double precision) AS mean FROM unnest(ground_truth) AS e(t)) AS m;
    -- scikit-learn: undefined below two samples; a constant ground truth scores 1 when matched exactly, else 0.
    r2 := CASE WHEN n < 2 THEN 'NaN'
               WHEN total_squares = 0 THEN CASE WHEN residual_squares = 0 THEN 1 ELSE 0 END
               ELSE 1 - residual_squares / total_squares END;
    RETURN jsonb_build_object(
        'r2', CASE WHEN r2 = 'NaN' THEN NULL ELSE to_jsonb(r2::real) END,  -- JSON has no NaN (serde writes null)
        'mse', to_jsonb((residual_squares / n)::real),
        'mae', to_jsonb((absolute / n)::real));
END
$fn$;

CREATE OR REPLACE FUNCTION pgml.sklearn_r2_score(ground_truth real[], y_hat real[]) RETURNS real
    LANGUAGE plpgsql VOLATILE STRICT AS $fn$
BEGIN
    RETURN coalesce((pgml.sklearn_regression_metrics(ground_truth, y_hat) ->> 'r2')::real, 'NaN');
END
$fn$;

CREATE OR REPLACE FUNCTION pgml.sklearn_classification_metrics(ground_truth real[], y_hat real[], num_classes bigint)
    RETURNS jsonb
    LANGUAGE plpgsql VOLATILE STRICT AS $fn$
DECLARE
    n bigint := cardinality(ground_truth);
    labels real[];
    nulls bigint;
    fractional real;
    metrics jsonb;
    positives bigint;
    negatives bigint;
    positive_rank_sum double precision;
BEGIN
    IF n <> cardinality(y_hat) OR n = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('ground_truth and y_hat need the same number of elements, at least one (got %s and %s)',
                n, cardinality(y_hat));
    END IF;
    SELECT count(*) FILTER (WHERE l IS NULL),
           min(l) FILTER (WHERE l <> trunc(l) OR l IN ('NaN', 'Infinity', '-Infinity')),
           array_agg(DISTINCT l) FILTER (WHERE l IS NOT NULL)
      INTO nulls, fractional, labels FROM unnest(ground_truth || y_hat) AS e(l);
    IF nulls > 0 THEN
        RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'ground_truth and y_hat must not contain NULL elements';
    END IF;
    IF fractional IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('class labels must be whole numbers, got %s', fractional);
    END IF;
    -- scikit-learn: two labels are a binary problem scored for the label 1, more are averaged over labels.
    IF cardinality(labels) = 2 AND NOT 1 = ANY (labels) THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = format('pos_label=1 is not a valid label. It should be one of %s', labels);
    END IF;
    WITH pairs AS (
        SELECT t, p FROM unnest(ground_truth, y_hat) AS e(t, p)
    ), counts AS (
        SELECT l,
               count(*) FILTER (WHERE t = l AND p = l) AS tp,
               count(*) FILTER (WHERE t <> l AND p = l) AS fp,
               count(*) FILTER (WHERE t = l AND p <> l) AS fn,
               count(*) FILTER (WHERE t = l) AS truths,
               count(*) FILTER (WHERE p = l) AS predictions
        FROM unnest(labels) AS u(l) CROSS JOIN pairs
        GROUP BY l
    ), scores AS (
        SELECT l, tp, fp, fn, truths, predictions,
               CASE WHEN tp + fp > 0 THEN tp::double precision / (tp + fp) ELSE 0 END AS precision,
               CASE WHEN tp + fn > 0 THEN tp::double precision / (tp + fn) ELSE 0 END AS recall,
               CASE WHEN 2 * tp + fp + fn > 0 THEN 2 * tp::double precision / (2 * tp + fp + fn) ELSE 0 END AS f1
        FROM counts
    ), chosen AS (
        SELECT
            CASE WHEN cardinality(labels) > 2 THEN avg(precision)
                 ELSE coalesce(max(precision) FILTER (WHERE l = 1), 0) END AS precision,
            CASE WHEN cardinality(labels) > 2 THEN avg(recall)
                 ELSE coalesce(max(recall) FILTER (WHERE l = 1), 0) END AS recall,
            CASE WHEN cardinality(labels) > 2 THEN avg(f1)
                 ELSE coalesce(max(f1) FILTER (WHERE l = 1), 0) END AS f1,
            sum(tp)::double precision AS correct,
            sum(truths * predictions)::double precision AS agreement,
            sum(predictions * predictions)::double precision AS predicted_squares,
            sum(truths * truths)::double precision AS true_squares
        FROM scores
    )
    SELECT jsonb_build_object(
        'f1', to_jsonb(f1::real),
        'f1_micro', to_jsonb((correct / n)::real),  -- micro-averaged F1 of single-label data is the accuracy
        'precision', to_jsonb(precision::real),
        'recall', to_jsonb(recall::real),
        'accuracy', to_jsonb((correct / n)::real),
        'mcc', to_jsonb(CASE WHEN (n::double precision ^ 2 - predicted_squares) * (n::double precision ^ 2 - true_squares) = 0
                             THEN 0
                             ELSE (correct * n - agreement)
                                  / sqrt((n::double precision ^ 2 - predicted_squares) * (n::double precision ^ 2 - true_squares))
                        END::real))
      INTO metrics FROM chosen;
    IF num_classes = 2 THEN
        -- roc_auc_score(ground_truth, y_hat): the predictions are the scores, label 1 is the positive class,
        -- ties count half (Mann-Whitney with average ranks).
        IF (SELECT array_agg(DISTINCT t ORDER BY t) FROM unnest(ground_truth) AS e(t))
           NOT IN (ARRAY[0, 1]::real[], ARRAY[-1, 1]::real[]) THEN
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = 'roc_auc needs ground_truth with both classes of {0, 1} or {-1, 1}';
        END IF;
        SELECT count(*) FILTER (WHERE t = 1), count(*) FILTER (WHERE t <> 1),
               sum(rank) FILTER (WHERE t = 1)
          INTO positives, negatives, positive_rank_sum
          FROM (SELECT t, avg(position) OVER (PARTITION BY p) AS rank
                FROM (SELECT t, p, row_number() OVER (ORDER BY p) AS position
                      FROM unnest(ground_truth, y_hat) AS e(t, p)) AS ordered) AS ranked;
        metrics := metrics || jsonb_build_object('roc_auc',
            to_jsonb(((positive_rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))::real));
    END IF;
    RETURN metrics;
END
$fn$;

CREATE OR REPLACE FUNCTION pgml.sklearn_f1_score(ground_truth real[], y_hat real[]) RETURNS real
    LANGUAGE plpgsql VOLATILE STRICT AS $fn$
DECLARE
    labels bigint;
BEGIN
    -- Binary F1 only (scikit-learn's default average): more than two labels are an ERROR there.
    SELECT count(DISTINCT l) INTO labels FROM unnest(ground_truth || y_hat) AS e(l);
    IF labels > 2 THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
            MESSAGE = 'Target is multiclass but average=''binary''. Please choose another average setting.';
    END IF;
    RETURN (pgml.sklearn_classification_metrics(ground_truth, y_hat, 0) ->> 'f1')::real;
END
$fn$;
