//! The cells drill's figures: per-cell results pooled per scenario, each round's p99s, the
//! blast-radius checks, and the plain-text table.
//!
//! The noisy-tenant check compares the p99 of cells B–D under the noisy tenant with their
//! baseline. On a shared machine one run's p99 drifts with whatever else runs, so the drill
//! alternates the scenarios in rounds and takes, for each cell, the **median over the
//! rounds of the ratio within a round** (noisy p99 / baseline p99 of the same round, minutes
//! apart at most): drift cancels within a round and one disturbed round does not decide. The
//! check is that the highest of those medians over B–D is ≤ 1.1×. The **control** scenario
//! is a second baseline (no noisy tenant) run in every round, and its ratio is computed the
//! same way: it is what the check reads when nothing changed, the noise floor that a reader
//! needs next to the figure.

use std::fmt::Write as _;

use tailwater_load::Stats;

/// One cell in one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct CellResult {
    /// The cell.
    pub cell: String,
    /// The tenant key that the cell's steady load used.
    pub tenant: String,
    /// Requests scheduled for that tenant.
    pub requests: u64,
    /// Of those, 2xx answers within the client timeout.
    pub ok: u64,
    /// 2xx p50, ms.
    pub p50_ms: f64,
    /// 2xx p99, ms.
    pub p99_ms: f64,
    /// p99 of the load generator's own lateness (its pacer behind the schedule), ms: the
    /// part of the latency that is the client starved of CPU, not the proxy.
    pub pacer_p99_ms: f64,
}

impl CellResult {
    /// `ok / requests` (1 when nothing was scheduled).
    pub fn goodput(&self) -> f64 {
        if self.requests == 0 {
            1.0
        } else {
            self.ok as f64 / self.requests as f64
        }
    }
}

/// One scenario's results, pooled over the rounds it ran in.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// `baseline`, `noisy`, `control` or `dead`.
    pub name: &'static str,
    /// Per cell, in the configured order.
    pub cells: Vec<CellResult>,
    /// The noisy tenant's requests and 2xx (noisy scenario only).
    pub noisy: Option<(u64, u64)>,
}

/// One round's 2xx p99 per cell (ms, in the configured order) in each of the three
/// alternated scenarios.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundP99 {
    /// The four tenants only.
    pub baseline: Vec<f64>,
    /// With the noisy tenant in the first cell.
    pub noisy: Vec<f64>,
    /// The four tenants only, again: the control.
    pub control: Vec<f64>,
}

/// The cells drill's report.
#[derive(Debug, Clone, PartialEq)]
pub struct CellsReport {
    /// The settings.
    pub config_summary: String,
    /// baseline, noisy and control (each pooled over the rounds), then dead.
    pub scenarios: Vec<Scenario>,
    /// Each round's p99s, in the order run.
    pub rounds: Vec<RoundP99>,
}

/// The median of `v` (the mean of the middle two for an even count); `None` when empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

impl CellsReport {
    fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// The lowest goodput of the cells other than the first while the first's backend was
    /// dead.
    pub fn others_goodput_when_dead(&self) -> Option<f64> {
        let s = self.scenario("dead")?;
        s.cells
            .iter()
            .skip(1)
            .map(CellResult::goodput)
            .reduce(f64::min)
    }

    /// The goal's figure: over the cells other than the first, the highest median over the
    /// rounds of (noisy p99 / baseline p99 in the same round).
    pub fn others_p99_ratio_when_noisy(&self) -> Option<f64> {
        self.paired_ratio(|r| &r.noisy)
    }

    /// The same figure for the control (a second baseline, no noisy tenant): the noise
    /// floor of [`others_p99_ratio_when_noisy`](Self::others_p99_ratio_when_noisy).
    pub fn others_p99_ratio_control(&self) -> Option<f64> {
        self.paired_ratio(|r| &r.control)
    }

    /// The noisy scenario's p99 pooled over the rounds against the pooled baseline's,
    /// highest over the cells other than the first (a second estimator, printed beside the
    /// paired one).
    pub fn pooled_p99_ratio_when_noisy(&self) -> Option<f64> {
        self.pooled_ratio("noisy")
    }

    /// [`pooled_p99_ratio_when_noisy`](Self::pooled_p99_ratio_when_noisy) for the control.
    pub fn pooled_p99_ratio_control(&self) -> Option<f64> {
        self.pooled_ratio("control")
    }

    /// Per round, the highest ratio over the cells other than the first of the selected
    /// scenario's p99 to the baseline's: the spread behind the medians.
    pub fn round_ratios(&self, noisy: bool) -> Vec<f64> {
        self.rounds
            .iter()
            .filter_map(|r| {
                let other = if noisy { &r.noisy } else { &r.control };
                r.baseline
                    .iter()
                    .zip(other)
                    .skip(1)
                    .map(|(b, o)| o / b.max(0.001))
                    .reduce(f64::max)
            })
            .collect()
    }

    fn paired_ratio(&self, pick: impl Fn(&RoundP99) -> &Vec<f64>) -> Option<f64> {
        let cells = self.rounds.first()?.baseline.len();
        (1..cells)
            .filter_map(|i| {
                median(
                    self.rounds
                        .iter()
                        .filter_map(|r| Some(pick(r).get(i)? / r.baseline.get(i)?.max(0.001)))
                        .collect(),
                )
            })
            .reduce(f64::max)
    }

    fn pooled_ratio(&self, scenario: &str) -> Option<f64> {
        let (b, n) = (self.scenario("baseline")?, self.scenario(scenario)?);
        b.cells
            .iter()
            .zip(&n.cells)
            .skip(1)
            .map(|(b, n)| n.p99_ms / b.p99_ms.max(0.001))
            .reduce(f64::max)
    }
}

/// The 2xx answers among `s`'s requests.
pub(super) fn ok_count(s: &Stats) -> u64 {
    s.status
        .iter()
        .filter(|(code, _)| (200..300).contains(*code))
        .map(|(_, n)| n)
        .sum()
}

/// The 2xx p99 of `s` in ms (0 when there is no answer).
pub(super) fn p99_ms(s: Option<&Stats>) -> f64 {
    s.map_or(0.0, |s| ms(&s.success, 0.99))
}

fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// One cell's figures from its tenant's pooled stats.
pub(super) fn result(cell: &str, tenant: &str, stats: Option<&Stats>) -> CellResult {
    match stats {
        Some(s) => CellResult {
            cell: cell.to_owned(),
            tenant: tenant.to_owned(),
            requests: s.requests,
            ok: ok_count(s),
            p50_ms: ms(&s.success, 0.5),
            p99_ms: ms(&s.success, 0.99),
            pacer_p99_ms: ms(&s.pacer_lag, 0.99),
        },
        None => CellResult {
            cell: cell.to_owned(),
            tenant: tenant.to_owned(),
            requests: 0,
            ok: 0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            pacer_p99_ms: 0.0,
        },
    }
}

/// The report as a plain-text table, with the two checks and the control beside them.
pub fn render_cells_table(report: &CellsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", report.config_summary);
    let _ = writeln!(
        out,
        "{:<9} {:<5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "scenario", "cell", "requests", "2xx", "goodput", "p50 ms", "p99 ms", "pacer p99 ms"
    );
    for s in &report.scenarios {
        for c in &s.cells {
            let _ = writeln!(
                out,
                "{:<9} {:<5} {:>9} {:>9} {:>8.2}% {:>9.1} {:>9.1} {:>12.1}",
                s.name,
                c.cell,
                c.requests,
                c.ok,
                100.0 * c.goodput(),
                c.p50_ms,
                c.p99_ms,
                c.pacer_p99_ms
            );
        }
        if let Some((n, ok)) = s.noisy {
            let _ = writeln!(
                out,
                "{:<9} {:<5} {:>9} {:>9}   (noisy tenant)",
                s.name, "a*", n, ok
            );
        }
    }
    let list = |v: Vec<f64>| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(
        out,
        "per round, highest p99 ratio of the other cells to that round's baseline:\n  noisy   {}\n  control {}",
        list(report.round_ratios(true)),
        list(report.round_ratios(false))
    );
    if let Some(g) = report.others_goodput_when_dead() {
        let _ = writeln!(
            out,
            "dead cell: lowest goodput of the other cells {:.2}% (goal >= 99%: {})",
            100.0 * g,
            if g >= 0.99 { "met" } else { "MISSED" }
        );
    }
    if let Some(r) = report.others_p99_ratio_when_noisy() {
        let pooled = report.pooled_p99_ratio_when_noisy().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "noisy tenant: other cells' p99 / baseline, median of rounds, highest cell {r:.2}x (goal <= 1.1x: {}); pooled {pooled:.2}x",
            if r <= 1.1 { "met" } else { "MISSED" }
        );
    }
    if let Some(r) = report.others_p99_ratio_control() {
        let pooled = report.pooled_p99_ratio_control().unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "control (no noisy tenant, same rounds): {r:.2}x; pooled {pooled:.2}x (the noise floor of the check)"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rounds: Vec<RoundP99>) -> CellsReport {
        CellsReport {
            config_summary: String::new(),
            scenarios: Vec::new(),
            rounds,
        }
    }

    fn round(baseline: [f64; 3], noisy: [f64; 3], control: [f64; 3]) -> RoundP99 {
        RoundP99 {
            baseline: baseline.to_vec(),
            noisy: noisy.to_vec(),
            control: control.to_vec(),
        }
    }

    #[test]
    fn the_check_is_the_highest_cell_of_the_median_round_ratio() {
        // Cell 0 (the noisy tenant's) is left out; cell 1's ratios are 1.0, 3.0 (one
        // disturbed round), 1.2 → median 1.2; cell 2's 1.0, 1.0, 1.05 → 1.0.
        let r = report(vec![
            round([0.0, 10.0, 10.0], [99.0, 10.0, 10.0], [1.0, 10.0, 9.0]),
            round([0.0, 10.0, 20.0], [99.0, 30.0, 20.0], [1.0, 12.0, 20.0]),
            round([0.0, 10.0, 20.0], [99.0, 12.0, 21.0], [1.0, 11.5, 22.0]),
        ]);
        let noisy = r.others_p99_ratio_when_noisy().expect("ratio");
        assert!((noisy - 1.2).abs() < 1e-9, "{noisy}");
        let control = r.others_p99_ratio_control().expect("ratio");
        // Control: cell 1's 1.0, 1.2, 1.15 → 1.15; cell 2's 0.9, 1.0, 1.1 → 1.0.
        assert!((control - 1.15).abs() < 1e-9, "{control}");
        let per_round = r.round_ratios(true);
        assert_eq!(per_round.len(), 3);
        assert!((per_round[1] - 3.0).abs() < 1e-9);
    }

    #[test]
    fn no_rounds_no_ratio() {
        assert_eq!(report(Vec::new()).others_p99_ratio_when_noisy(), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0, 4.0]), Some(2.5));
    }
}
