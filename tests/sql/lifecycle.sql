-- The model lifecycle the way PostgresML's examples walk it.
-- Only what does not depend on the models' scores is printed, so the expected output is exact.
CREATE EXTENSION IF NOT EXISTS pgml;

-- classification
SELECT * FROM pgml.load_dataset('iris');
SELECT * FROM pgml.train('Iris Flowers', 'classification', 'pgml.iris', 'target', 'xgboost');
SELECT * FROM pgml.train('Iris Flowers', algorithm => 'random_forest', automatic_deploy => false,
                         hyperparams => '{"n_estimators": 10, "random_state": 0}');
SELECT * FROM pgml.train('Iris Flowers', algorithm => 'svm', automatic_deploy => false,
                         search => 'grid', search_params => '{"C": [0.5, 1.0]}', search_args => '{"cv": 2}');
SELECT id, name, task, algorithm, runtime, deployed FROM pgml.trained_models ORDER BY id;
SELECT algorithm, search, metrics ? 'f1' AS f1, metrics ? 'accuracy' AS accuracy,
       (metrics -> 'search_results') IS NOT NULL AS searched
  FROM pgml.models ORDER BY id;
SELECT * FROM pgml.deploy('Iris Flowers', 'most_recent');
SELECT * FROM pgml.deploy('Iris Flowers', 'rollback');
SELECT * FROM pgml.deploy('Iris Flowers', 'most_recent', 'random_forest');
SELECT * FROM pgml.deploy(1);
SELECT name, task, algorithm FROM pgml.deployed_models;
SELECT strategy FROM pgml.deployments ORDER BY id;

-- regression, with preprocessing
SELECT * FROM pgml.load_dataset('diabetes');
SELECT * FROM pgml.train('Diabetes', 'regression', 'pgml.diabetes', 'target', 'linear',
                         preprocess => '{"age": {"scale": "standard"}}');
SELECT * FROM pgml.train('Diabetes', algorithm => 'ridge', automatic_deploy => false);
SELECT p.name, m.algorithm, m.metrics ? 'r2' AS r2, m.metrics ? 'mean_squared_error' AS mse
  FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id WHERE p.name = 'Diabetes' ORDER BY m.id;

-- clustering and decomposition: linear becomes kmeans and pca
SELECT * FROM pgml.train('Iris Clusters', 'clustering', 'pgml.iris', algorithm => 'linear',
                         hyperparams => '{"n_clusters": 3}');
SELECT * FROM pgml.train('Iris Components', 'decomposition', 'pgml.iris', algorithm => 'linear',
                         hyperparams => '{"n_components": 2}');

-- prediction: by project (its deployment now), by model id, over table rows, the other shapes
SELECT pgml.predict('Iris Flowers', ARRAY[5.1, 3.5, 1.4, 0.2]) AS setosa;
SELECT pgml.predict(1, ARRAY[6.7, 3.0, 5.2, 2.3]) AS virginica;
SELECT avg((pgml.predict('Iris Flowers', ARRAY[sepal_length, sepal_width, petal_length, petal_width]) = target)::int) > 0.9
       AS accurate FROM pgml.iris;
SELECT array_length(pgml.predict_proba('Iris Flowers', ARRAY[5.1, 3.5, 1.4, 0.2]), 1) AS classes;
SELECT count(*) FROM pgml.predict_batch('Iris Flowers', ARRAY[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]);
SELECT array_length(pgml.decompose('Iris Components', ARRAY[5.1, 3.5, 1.4, 0.2, 0]), 1) AS components;  -- no label: target is a feature
SELECT pgml.predict('Diabetes', ARRAY[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]) > 0 AS positive;

-- the row form: fields by position onto the feature columns, through the snapshot's preprocessing
SELECT count(*) AS predicted FROM pgml.diabetes
 WHERE pgml.predict('Diabetes', (age, sex, bmi, bp, s1, s2, s3, s4, s5, s6)) IS NOT NULL;
SELECT pgml.predict('Diabetes', ROW(0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02)) > 0
       AS positive;

-- an array column: an 8x8 image is 64 features, and a two-dimensional argument is flattened
SELECT * FROM pgml.load_dataset('digits');
SELECT * FROM pgml.train('Handwritten Digits', 'classification', 'pgml.digits', 'target', 'xgboost',
                         hyperparams => '{"n_estimators": 10}');
SELECT avg((pgml.predict('Handwritten Digits', image) = target)::int) > 0.8 AS accurate FROM pgml.digits;
SELECT count(*) FILTER (WHERE pgml.predict('Handwritten Digits', ROW(image)) = pgml.predict('Handwritten Digits', image))
       AS row_form_agrees FROM pgml.digits;

-- the catalog as dashboards read it
SELECT name, task FROM pgml.projects ORDER BY id;
SELECT relation_name, y_column_name, test_sampling, status, analysis FROM pgml.snapshots ORDER BY id;
SELECT count(*) AS artifacts, bool_and(length(data) > 0) AS non_empty FROM pgml.files;
SELECT name, task, algorithm FROM pgml.overview ORDER BY deployed_at DESC LIMIT 2;

-- errors keep the contract's texts
SELECT * FROM pgml.train('Iris Flowers', 'regression');
SELECT * FROM pgml.train('Nope');
SELECT * FROM pgml.deploy('Iris Flowers', 'sideways');
SELECT pgml.predict('Nope', ARRAY[1, 2]);
SELECT pgml.predict('Iris Flowers', ARRAY[1, 2]);
SELECT pgml.predict('Diabetes', 'not a row'::text);
SELECT pgml.predict('Diabetes', (age, sex)) FROM pgml.diabetes;
SELECT pgml.predict_proba('Diabetes', ARRAY[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]);
DROP EXTENSION pgml CASCADE;
