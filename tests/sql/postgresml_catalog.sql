-- A catalog as a PostgresML 2.x install leaves it (abridged from its schema.sql), for the adoption tests:
-- enum types with the labels of an upgraded install (`agglomerative`, `text-pair-classification`) but
-- without some the contract lists, NOT NULL columns the contract relaxes, no pgml.logs, PostgresML's
-- views, an aggregate and a function declared with other parameter names than the proxy's, a C function,
-- and some data.
CREATE SCHEMA pgml;

CREATE TYPE pgml.task AS ENUM ('regression', 'classification', 'decomposition', 'clustering',
    'question_answering', 'summarization', 'translation', 'text_classification', 'text_generation',
    'text2text', 'embedding', 'text-pair-classification');
CREATE TYPE pgml.algorithm AS ENUM ('linear', 'xgboost', 'xgboost_random_forest', 'svm', 'lasso',
    'elastic_net', 'ridge', 'kmeans', 'dbscan', 'knn', 'random_forest', 'least_angle', 'lasso_least_angle',
    'orthogonal_matching_pursuit', 'bayesian_ridge', 'automatic_relevance_determination',
    'stochastic_gradient_descent', 'perceptron', 'passive_aggressive', 'ransac', 'theil_sen', 'huber',
    'quantile', 'kernel_ridge', 'gaussian_process', 'nu_svm', 'ada_boost', 'bagging', 'extra_trees',
    'gradient_boosting_trees', 'hist_gradient_boosting', 'linear_svm', 'lightgbm', 'transformers',
    'affinity_propagation', 'birch', 'feature_agglomeration', 'mini_batch_kmeans', 'mean_shift', 'optics',
    'spectral', 'spectral_bi', 'spectral_co', 'catboost', 'agglomerative');
CREATE TYPE pgml.runtime AS ENUM ('python', 'rust');
CREATE TYPE pgml.strategy AS ENUM ('new_score', 'best_score', 'most_recent', 'rollback', 'specific');
CREATE TYPE pgml.sampling AS ENUM ('random', 'last');
CREATE TYPE pgml.search AS ENUM ('grid', 'random');
CREATE TYPE pgml.status AS ENUM ('in_progress', 'successful', 'failed');

CREATE FUNCTION pgml.set_updated_at() RETURNS TRIGGER AS $$
BEGIN
    IF (NEW IS DISTINCT FROM OLD AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at) THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN new;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE pgml.projects(
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    task pgml.task NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT clock_timestamp()
);
CREATE TRIGGER projects_auto_updated_at BEFORE UPDATE ON pgml.projects
    FOR EACH ROW EXECUTE PROCEDURE pgml.set_updated_at();
CREATE UNIQUE INDEX projects_name_idx ON pgml.projects(name);

CREATE TABLE pgml.snapshots(
    id BIGSERIAL PRIMARY KEY,
    relation_name TEXT NOT NULL,
    y_column_name TEXT[] NOT NULL,
    test_size FLOAT4 NOT NULL,
    test_sampling pgml.sampling NOT NULL,
    status TEXT NOT NULL,
    columns JSONB,
    analysis JSONB,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    materialized BOOLEAN DEFAULT false
);

CREATE TABLE pgml.models(
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL,
    snapshot_id BIGINT NOT NULL,
    num_features INT NOT NULL,
    algorithm TEXT NOT NULL,
    runtime pgml.runtime DEFAULT 'python'::pgml.runtime,
    hyperparams JSONB NOT NULL,
    status TEXT NOT NULL,
    metrics JSONB,
    search TEXT,
    search_params JSONB NOT NULL,
    search_args JSONB NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT project_id_fk FOREIGN KEY(project_id) REFERENCES pgml.projects(id) ON DELETE CASCADE,
    CONSTRAINT snapshot_id_fk FOREIGN KEY(snapshot_id) REFERENCES pgml.snapshots(id) ON DELETE SET NULL
);
CREATE INDEX models_project_id_idx ON pgml.models(project_id);

CREATE TABLE pgml.deployments(
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL,
    model_id BIGINT NOT NULL,
    strategy pgml.strategy NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT project_id_fk FOREIGN KEY(project_id) REFERENCES pgml.projects(id) ON DELETE CASCADE,
    CONSTRAINT model_id_fk FOREIGN KEY(model_id) REFERENCES pgml.models(id) ON DELETE CASCADE
);
CREATE INDEX deployments_project_id_created_at_idx ON pgml.deployments(project_id);

CREATE TABLE pgml.files(
    id BIGSERIAL PRIMARY KEY,
    model_id BIGINT NOT NULL,
    path TEXT NOT NULL,
    part INTEGER NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    data BYTEA NOT NULL,
    CONSTRAINT model_id_fk FOREIGN KEY(model_id) REFERENCES pgml.models(id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX files_model_id_path_part_idx ON pgml.files(model_id, path, part);

CREATE VIEW pgml.overview AS
SELECT p.name, d.created_at AS deployed_at, p.task, m.algorithm, m.runtime, s.relation_name, s.y_column_name,
       s.test_sampling, s.test_size
FROM pgml.projects p
INNER JOIN pgml.models m ON p.id = m.project_id
INNER JOIN pgml.deployments d ON d.project_id = p.id AND d.model_id = m.id
INNER JOIN pgml.snapshots s ON s.id = m.snapshot_id
ORDER BY d.created_at DESC;

-- PostgresML's aggregates come from pgrx with its own support functions and argument names.
CREATE AGGREGATE pgml.sum(value real[]) (sfunc = array_cat, stype = real[]);

-- A pgrx function: C, and here with another parameter name than the contract's `"text"`. The symbol is
-- any that loads; the function is never called.
CREATE FUNCTION pgml.embed(transformer text, input text, kwargs jsonb DEFAULT '{}') RETURNS real[]
    LANGUAGE c IMMUTABLE STRICT AS '$libdir/plpgsql', 'plpgsql_call_handler';

INSERT INTO pgml.projects (name, task) VALUES ('Breast Cancer Detection', 'classification');
INSERT INTO pgml.snapshots (relation_name, y_column_name, test_size, test_sampling, status)
    VALUES ('pgml.breast_cancer', '{malignant}', 0.25, 'last', 'in_progress');
INSERT INTO pgml.models (project_id, snapshot_id, num_features, algorithm, hyperparams, status,
                         search_params, search_args)
    VALUES (1, 1, 30, 'xgboost', '{}', 'successful', '{}', '{}');
INSERT INTO pgml.deployments (project_id, model_id, strategy) VALUES (1, 1, 'new_score');

-- The user's own view on the catalog: adoption must keep it working.
CREATE VIEW public.my_deployments AS SELECT name, algorithm FROM pgml.overview;
