//! Reading `Worker::metrics_text()` (Prometheus text exposition).

use std::collections::BTreeMap;

/// Every sample of the text, summed over labels: `name -> total`.
/// Comment lines and lines that do not end in a number are skipped.
pub fn totals(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        *out.entry(name.to_owned()).or_default() += value;
    }
    out
}

/// One counter summed over every core; `None` when the text lacks it.
pub fn total(text: &str, name: &str) -> Option<u64> {
    totals(text).get(name).copied()
}

/// How much each series grew from `before` to `after` (missing counts as 0).
pub fn growth(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// Waits until `worker`'s series `name`, summed over labels, is `want`;
/// the error names the value it had.
pub async fn wait_total(
    worker: &weir::Worker,
    name: &str,
    want: u64,
    limit: std::time::Duration,
) -> anyhow::Result<()> {
    let now = || total(&worker.metrics_text(), name);
    super::until(limit, &format!("{name} to be {want}"), || {
        now() == Some(want)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e} (it is {:?})", now()))
}
