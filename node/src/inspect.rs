//! `streamreel inspect`: what the bronze table holds.

use std::path::Path;

use deltalake::datafusion::prelude::SessionContext;
use streamreel_lake::BronzeTable;
use streamreel_lake::query::{column_as_i64, register_path, run_sql};

use crate::error::NodeError;

pub async fn inspect(lake_dir: &Path) -> Result<String, NodeError> {
    let path = BronzeTable::path_in(lake_dir);
    if !path.join("_delta_log").exists() {
        return Ok(format!("no bronze table at {} yet", path.display()));
    }
    let ctx = SessionContext::new();
    register_path(&ctx, "bronze", &path).await?;
    let batches = run_sql(
        &ctx,
        "SELECT kafka_partition, COUNT(*) AS row_count, COUNT(DISTINCT event_id) AS distinct_ids, \
         MAX(kafka_offset) AS max_offset FROM bronze GROUP BY kafka_partition ORDER BY kafka_partition",
    )
    .await?;
    let mut bronze = BronzeTable::open_or_create(lake_dir).await?;
    let mut report = format!(
        "bronze table {} (version {})\n",
        path.display(),
        bronze.version().unwrap_or_default()
    );
    report.push_str("partition        rows   distinct ids   committed offset\n");
    let mut total = 0;
    for batch in &batches {
        let partitions = column_as_i64(batch, "kafka_partition")?;
        let rows = column_as_i64(batch, "row_count")?;
        let distinct = column_as_i64(batch, "distinct_ids")?;
        for i in 0..batch.num_rows() {
            let committed = bronze.committed_offset(partitions[i] as i32).await?;
            total += rows[i];
            report.push_str(&format!(
                "{:>9} {:>11} {:>14} {:>18}\n",
                partitions[i],
                rows[i],
                distinct[i],
                committed.map_or("-".to_string(), |o| o.to_string())
            ));
        }
    }
    report.push_str(&format!("total rows: {total}\n"));
    Ok(report)
}
