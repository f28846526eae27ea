//! The suite's results as text tables (the README's summary and do-no-harm matrix).

use super::{CheckResult, Goal, NO_HARM_SHED_HALF, NO_HARM_SHED_NINE, Outcome};
use crate::text::text_table;

fn mark(o: &Outcome) -> String {
    format!("{} {}", if o.pass { "ok  " } else { "FAIL" }, o.figure)
}

/// The summary: one row per overload, settle, tiers and replicas check, two rows for the do-no-harm
/// matrix (its worst cell at 0.5× and at 0.9×, and how many cells pass), one column per
/// policy, and a last row saying whether the policy meets every goal.
pub fn summary_table(results: &[CheckResult]) -> String {
    let Some(first) = results.first() else {
        return String::new();
    };
    let policies: Vec<&str> = first.outcomes.iter().map(|o| o.policy.as_str()).collect();
    let mut rows = vec![
        std::iter::once("check (goal)".to_string())
            .chain(policies.iter().map(|p| p.to_string()))
            .collect::<Vec<_>>(),
    ];
    for (load, max) in [("0.5x", NO_HARM_SHED_HALF), ("0.9x", NO_HARM_SHED_NINE)] {
        let cells: Vec<&CheckResult> = results
            .iter()
            .filter(|r| r.group == "no-harm" && r.name.ends_with(&format!(" {load}")))
            .collect();
        if cells.is_empty() {
            continue;
        }
        let mut row = vec![format!(
            "no-harm {load}: worst shed, cells ok (<= {}%)",
            max * 100.0
        )];
        for (i, _) in policies.iter().enumerate() {
            let worst = cells
                .iter()
                .map(|c| &c.outcomes[i])
                .max_by(|a, b| a.shed.total_cmp(&b.shed));
            let ok = cells.iter().filter(|c| c.outcomes[i].pass).count();
            row.push(match worst {
                Some(w) => format!(
                    "{} {:.1}% {ok}/{}",
                    if ok == cells.len() { "ok  " } else { "FAIL" },
                    w.shed * 100.0,
                    cells.len()
                ),
                None => "-".into(),
            });
        }
        rows.push(row);
    }
    for r in results.iter().filter(|r| r.group != "no-harm") {
        let goal = match r.goal {
            Goal::Overload => "gp>=95%, p99<=2x",
            Goal::Settle => "settles <= 1s",
            Goal::Replicas => "gp>=95%, sum settles",
            Goal::Tiers { max_loss: Some(_) } => "with tiers: gp within 2 points, order",
            Goal::Tiers { max_loss: None } => "with tiers: order",
            Goal::NoHarm { .. } => "",
        };
        let mut row = vec![format!("{} ({goal})", r.name)];
        row.extend(r.outcomes.iter().map(mark));
        rows.push(row);
    }
    let mut all = vec!["every goal".to_string()];
    for (i, _) in policies.iter().enumerate() {
        let failed = results.iter().filter(|r| !r.outcomes[i].pass).count();
        all.push(if failed == 0 {
            "MET".into()
        } else {
            format!("{failed} of {} checks fail", results.len())
        });
    }
    rows.push(all);
    text_table(&rows, true)
}

/// The do-no-harm matrix: one row per cell, the share shed per policy (`!` marks a miss).
pub fn no_harm_table(results: &[CheckResult]) -> String {
    let cells: Vec<&CheckResult> = results.iter().filter(|r| r.group == "no-harm").collect();
    let Some(first) = cells.first() else {
        return String::new();
    };
    let mut rows = vec![
        std::iter::once("cell (service, workers, mean, load)".to_string())
            .chain(first.outcomes.iter().map(|o| o.policy.clone()))
            .collect::<Vec<_>>(),
    ];
    for c in cells {
        let mut row = vec![c.name.trim_start_matches("no-harm ").to_string()];
        row.extend(
            c.outcomes
                .iter()
                .map(|o| format!("{}{}", o.figure, if o.pass { "" } else { " !" })),
        );
        rows.push(row);
    }
    text_table(&rows, true)
}
