//! Prints the built-in suite's tables (a quick look without the CLI).
use tailwater_sim::{engine::RunOptions, policies_for, report, run_scenario, scenario};

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let start = std::time::Instant::now();
    let mut events = 0;
    for name in scenario::BUILTIN {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let s = scenario::builtin(name).expect("built-in");
        let r = run_scenario(
            &s,
            &policies_for(&s).expect("lineup"),
            RunOptions::default(),
        )
        .expect("runs");
        events += r.policies.iter().map(|p| p.events).sum::<u64>();
        println!("{}", report::table(&r));
    }
    eprintln!("{events} events in {:?}", start.elapsed());
}
