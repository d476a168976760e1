//! Data tests (`lake/models/tests.toml`), declared next to the models: each is a
//! query for the rows that break a rule; a test passes when it finds none.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use serde::Deserialize;

use crate::engine::LakeSettings;
use crate::error::LakeError;
use crate::metadata::VideoMetadata;
use crate::query::{column_as_i64, register_table, run_sql};
use crate::tables::{Lake, open_if_exists, register_metadata};

/// The data tests shipped with the models.
pub const DATA_TESTS: &str = include_str!("../models/tests.toml");

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableTests {
    #[serde(default)]
    unique: Vec<Vec<String>>,
    #[serde(default)]
    not_null: Vec<String>,
    #[serde(default)]
    range: BTreeMap<String, [f64; 2]>,
    #[serde(default)]
    in_metadata: Vec<String>,
}

/// One declared test: the table it guards and the query for failing rows.
#[derive(Debug, Clone, PartialEq)]
pub struct DataTest {
    pub table: String,
    pub name: String,
    pub failing_rows_sql: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataTestResult {
    pub test: DataTest,
    pub failing_rows: u64,
    /// Up to three failing rows, as a table.
    pub examples: String,
    /// Set when the test could not run (e.g. a missing table): counts as failed.
    pub error: Option<String>,
}

impl DataTestResult {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.failing_rows == 0
    }
}

/// Parses the declarations into queries (table `t` stands for the guarded table).
pub fn declared_tests(text: &str) -> Result<Vec<DataTest>, LakeError> {
    let tables: BTreeMap<String, TableTests> =
        toml::from_str(text).map_err(|e| LakeError::DataTestsFile(e.to_string()))?;
    let mut tests = Vec::new();
    for (table, declared) in tables {
        let mut add = |name: String, sql: String| {
            tests.push(DataTest {
                table: table.clone(),
                name,
                failing_rows_sql: sql,
            })
        };
        for key in &declared.unique {
            let columns = key.join(", ");
            let nulls = key
                .iter()
                .map(|c| format!("{c} IS NULL"))
                .collect::<Vec<_>>()
                .join(" OR ");
            add(
                format!("unique({columns})"),
                format!(
                    "SELECT {columns}, COUNT(*) AS copies FROM t GROUP BY {columns} \
                     HAVING COUNT(*) > 1 OR {nulls}"
                ),
            );
        }
        for column in &declared.not_null {
            add(
                format!("not_null({column})"),
                format!("SELECT * FROM t WHERE {column} IS NULL"),
            );
        }
        for (column, [low, high]) in &declared.range {
            let (low, high) = (sql_number(*low), sql_number(*high));
            add(
                format!("range({column}, {low}, {high})"),
                format!(
                    "SELECT * FROM t WHERE {column} < {low} OR {column} > {high} \
                     OR isnan(CAST({column} AS DOUBLE))"
                ),
            );
        }
        for column in &declared.in_metadata {
            add(
                format!("in_metadata({column})"),
                format!(
                    "SELECT * FROM t WHERE {column} NOT IN (SELECT video_id FROM video_metadata)"
                ),
            );
        }
    }
    Ok(tests)
}

/// A bound as SQL reads it: Rust prints a large `f64` with every digit, which
/// SQL would take for an out-of-range integer.
fn sql_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

fn table_location(lake_dir: &Path, table: &str) -> std::path::PathBuf {
    Lake::new(lake_dir).table(table)
}

/// Runs the declared tests of `table` against `batches`, data not yet
/// published: the audit step of write-audit-publish. `ctx` is a fresh session
/// of the run, so that the tests' queries count in its memory limit.
pub async fn audit_batches(
    ctx: SessionContext,
    table: &str,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    videos: &[VideoMetadata],
    declarations: &str,
) -> Result<Vec<DataTestResult>, LakeError> {
    register_metadata(&ctx, videos)?;
    ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    let mut results = Vec::new();
    for test in declared_tests(declarations)?
        .into_iter()
        .filter(|t| t.table == table)
    {
        results.push(run_one(&ctx, test).await);
    }
    Ok(results)
}

/// Runs every declared test against the tables' latest versions.
///
/// All tests draw on one memory pool of `memory_limit_bytes`: a uniqueness
/// test groups a whole table, which on a large lake would otherwise hold as
/// much memory as the table has keys.
pub async fn run_data_tests(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    declarations: &str,
    memory_limit_bytes: usize,
) -> Result<Vec<DataTestResult>, LakeError> {
    let tests = declared_tests(declarations)?;
    let runtime = LakeSettings {
        memory_limit_bytes,
        chunk_events: LakeSettings::DEFAULT_CHUNK_EVENTS,
    }
    .runtime()?;
    let mut results = Vec::new();
    let mut contexts: BTreeMap<String, Option<SessionContext>> = BTreeMap::new();
    for test in tests {
        if !contexts.contains_key(&test.table) {
            let ctx = match open_if_exists(&table_location(lake_dir, &test.table)).await? {
                Some(table) => {
                    let ctx = LakeSettings::context_in(runtime.clone());
                    register_metadata(&ctx, videos)?;
                    register_table(&ctx, "t", &table).await?;
                    Some(ctx)
                }
                None => None,
            };
            contexts.insert(test.table.clone(), ctx);
        }
        let Some(ctx) = &contexts[&test.table] else {
            results.push(DataTestResult {
                error: Some(format!("table {} does not exist", test.table)),
                test,
                failing_rows: 0,
                examples: String::new(),
            });
            continue;
        };
        results.push(run_one(ctx, test).await);
    }
    Ok(results)
}

async fn run_one(ctx: &SessionContext, test: DataTest) -> DataTestResult {
    let counted = format!("SELECT COUNT(*) AS n FROM ({})", test.failing_rows_sql);
    let outcome = async {
        let count = run_sql(ctx, &counted).await?;
        let failing = count
            .first()
            .map(|b| column_as_i64(b, "n"))
            .transpose()?
            .and_then(|v| v.first().copied())
            .unwrap_or(0) as u64;
        let examples = if failing > 0 {
            let rows = run_sql(ctx, &format!("{} LIMIT 3", test.failing_rows_sql)).await?;
            pretty_format_batches(&rows)?.to_string()
        } else {
            String::new()
        };
        Ok::<_, LakeError>((failing, examples))
    }
    .await;
    match outcome {
        Ok((failing_rows, examples)) => DataTestResult {
            test,
            failing_rows,
            examples,
            error: None,
        },
        Err(e) => DataTestResult {
            test,
            failing_rows: 0,
            examples: String::new(),
            error: Some(e.to_string()),
        },
    }
}

/// A readable report: one line per test, failing rows with examples below.
pub fn report(results: &[DataTestResult]) -> String {
    let mut out = String::new();
    for result in results {
        let status = if result.passed() { "PASS" } else { "FAIL" };
        let _ = write!(out, "{status} {}.{}", result.test.table, result.test.name);
        match &result.error {
            Some(error) => {
                let _ = writeln!(out, ": {error}");
            }
            None if result.failing_rows > 0 => {
                let _ = writeln!(out, ": {} failing rows, for example:", result.failing_rows);
                for line in result.examples.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
            None => out.push('\n'),
        }
    }
    let failed = results.iter().filter(|r| !r.passed()).count();
    let _ = writeln!(out, "{} passed, {} failed", results.len() - failed, failed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_declarations_parse_and_cover_every_model() {
        let tests = declared_tests(DATA_TESTS).unwrap();
        for (model, _) in crate::gold::MODELS {
            assert!(
                tests
                    .iter()
                    .any(|t| t.table == model && t.name.starts_with("unique")),
                "{model}"
            );
        }
    }

    const RULES: &str = r#"
[t]
unique = [["id"]]
not_null = ["name"]
range = { share = [0.0, 1.0] }
in_metadata = ["video_id"]
"#;

    fn failing(results: &[DataTestResult]) -> Vec<(&str, u64)> {
        results
            .iter()
            .filter(|r| !r.passed())
            .map(|r| (r.test.name.as_str(), r.failing_rows))
            .collect()
    }

    #[tokio::test]
    async fn each_rule_fails_on_a_row_that_breaks_it() {
        use deltalake::arrow::array::{Float64Array, StringArray};
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("share", DataType::Float64, true),
            Field::new("video_id", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c", "c"])),
                Arc::new(StringArray::from(vec![
                    None,
                    Some("x"),
                    Some("y"),
                    Some("z"),
                ])),
                Arc::new(Float64Array::from(vec![f64::NAN, 0.5, 1.5, 1.0])),
                Arc::new(StringArray::from(vec!["v1", "v1", "unlisted", "v1"])),
            ],
        )
        .unwrap();
        let videos = [VideoMetadata {
            video_id: "v1".into(),
            title: "T".into(),
            genre: "G".into(),
            creator: "C".into(),
            duration_s: 60.0,
            release_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        }];
        let results = audit_batches(
            SessionContext::new(),
            "t",
            schema,
            vec![batch],
            &videos,
            RULES,
        )
        .await
        .unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(
            failing(&results),
            [
                ("unique(id)", 1),
                ("not_null(name)", 1),
                ("range(share, 0, 1)", 2),
                ("in_metadata(video_id)", 1),
            ]
        );
        assert!(
            results[2].examples.contains("1.5"),
            "{}",
            results[2].examples
        );
    }

    const LIMIT: usize = LakeSettings::DEFAULT_MEMORY_LIMIT_BYTES;

    #[tokio::test]
    async fn the_tests_of_a_lake_hold_no_more_memory_than_the_limit() {
        use deltalake::arrow::array::StringArray;
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        let lake = tempfile::tempdir().unwrap();
        let path = table_location(lake.path(), "t");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let ids = StringArray::from_iter_values((0..200_000).map(|i| format!("id-{i:012}")));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ids)]).unwrap();
        let (table, _) = crate::tables::write_target(None, &path).unwrap();
        table.write(vec![batch]).await.unwrap();
        let unique_only = "[t]\nunique = [[\"id\"]]\n";

        let bounded = run_data_tests(lake.path(), &[], unique_only, 64 << 10)
            .await
            .unwrap();
        let error = bounded[0]
            .error
            .as_deref()
            .expect("grouping 200,000 ids needs more than 64 KiB");
        assert!(error.contains("Resources exhausted"), "{error}");

        let ample = run_data_tests(lake.path(), &[], unique_only, LIMIT)
            .await
            .unwrap();
        assert!(ample[0].passed(), "{:?}", ample[0].error);
    }

    #[tokio::test]
    async fn a_missing_table_fails_its_tests() {
        let lake = tempfile::tempdir().unwrap();
        let results = run_data_tests(lake.path(), &[], RULES, LIMIT)
            .await
            .unwrap();
        assert_eq!(results.len(), 4);
        assert!(results.iter().all(|r| !r.passed()));
        assert!(
            results[0]
                .error
                .as_deref()
                .unwrap()
                .contains("does not exist"),
            "{:?}",
            results[0].error
        );
    }

    #[test]
    fn an_unknown_rule_is_refused() {
        let error = declared_tests("[x]\nuniq = [[\"a\"]]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("uniq"), "{error}");
    }
}
