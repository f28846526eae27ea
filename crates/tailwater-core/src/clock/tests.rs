use super::*;

#[test]
fn manual_clock_clones_share_time_and_never_go_backwards() {
    let clock = ManualClock::starting_at(Duration::from_secs(2));
    let other = clock.clone();
    other.advance(Duration::from_millis(250));
    assert_eq!(clock.now(), Duration::from_millis(2250));
    assert!(!clock.set(Duration::from_secs(1)));
    assert_eq!(clock.now(), Duration::from_millis(2250));
    assert!(clock.set(Duration::from_secs(3)));
    assert_eq!(other.now(), Duration::from_secs(3));
}

#[test]
fn manual_clock_saturates_instead_of_wrapping() {
    let clock = ManualClock::new();
    clock.advance(Duration::MAX);
    clock.advance(Duration::from_secs(1));
    assert_eq!(clock.now(), Duration::from_nanos(u64::MAX));
}

/// Both sources this process can use: the default one and the forced OS one.
fn clocks() -> [MonotonicClock; 2] {
    [MonotonicClock::new(), MonotonicClock::os()]
}

/// How far a TSC reading may lag one handed over from another thread (the CPU's
/// out-of-order window, measured below 1 µs; see the module docs). Unsynchronised
/// counters (governor #299) are off by milliseconds to seconds and fail this.
const TSC_HANDOVER_TOLERANCE: Duration = Duration::from_micros(20);

fn handover_tolerance(clock: &MonotonicClock) -> Duration {
    match clock.source() {
        ClockSource::Os => Duration::ZERO,
        ClockSource::Tsc => TSC_HANDOVER_TOLERANCE,
    }
}

#[test]
fn monotonic_clock_does_not_decrease_within_a_thread() {
    for clock in clocks() {
        let mut last = clock.now_nanos();
        for i in 0..1_000_000 {
            let now = clock.now_nanos();
            assert!(
                now >= last,
                "{clock:?}: step {i} went from {last} to {now} ns"
            );
            last = now;
        }
        let (a, b) = (clock.now(), clock.now());
        assert!(b >= a, "{clock:?}");
    }
}

/// A reading sent to another thread through a channel happens-before that thread's
/// next reading, which must not be earlier (ping-pong, both directions).
#[test]
fn monotonic_clock_readings_handed_over_a_channel_do_not_go_back() {
    use std::sync::mpsc::sync_channel;
    const ROUNDS: usize = 10_000;
    for clock in clocks() {
        let tolerance = duration_to_nanos(handover_tolerance(&clock));
        let (to_peer, from_main) = sync_channel::<u64>(1);
        let (to_main, from_peer) = sync_channel::<u64>(1);
        // A clone reads the same time (same origin, same calibration).
        let peer_clock = clock.clone();
        let peer = std::thread::spawn(move || {
            let clock = peer_clock;
            let mut worst = 0;
            for _ in 0..ROUNDS {
                let sent = from_main.recv().expect("main thread alive");
                let now = clock.now_nanos();
                worst = worst.max(sent.saturating_sub(now));
                to_main.send(clock.now_nanos()).expect("main thread alive");
            }
            worst
        });
        let mut worst = 0;
        for _ in 0..ROUNDS {
            to_peer.send(clock.now_nanos()).expect("peer alive");
            let sent = from_peer.recv().expect("peer alive");
            let now = clock.now_nanos();
            worst = worst.max(sent.saturating_sub(now));
        }
        let worst = worst.max(peer.join().expect("peer panicked"));
        assert!(
            worst <= tolerance,
            "{clock:?}: a reading was {worst} ns behind one handed over (allowed {tolerance})"
        );
    }
}

/// The tight version: one thread publishes readings through an atomic (release), the
/// other reads them (acquire) and then the clock, millions of times.
#[test]
fn monotonic_clock_readings_handed_over_an_atomic_do_not_go_back() {
    use std::sync::atomic::AtomicBool;
    const READS: usize = 2_000_000;
    for clock in clocks() {
        let tolerance = duration_to_nanos(handover_tolerance(&clock));
        let slot = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (slot, done) = (Arc::clone(&slot), Arc::clone(&done));
            let clock = clock.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    slot.store(clock.now_nanos(), Ordering::Release);
                }
            })
        };
        let mut worst = 0;
        for _ in 0..READS {
            let published = slot.load(Ordering::Acquire);
            let now = clock.now_nanos();
            worst = worst.max(published.saturating_sub(now));
        }
        done.store(true, Ordering::Relaxed);
        writer.join().expect("writer panicked");
        assert!(
            worst <= tolerance,
            "{clock:?}: a reading was {worst} ns behind one published before it \
             (allowed {tolerance})"
        );
    }
}

/// Elapsed time agrees with `Instant` over ~2 ms. No sleep: spin until `Instant` shows
/// 2 ms, and bracket each reading between two `Instant`s so that a preemption between
/// the reads widens the bounds instead of failing the test.
#[test]
fn monotonic_clock_agrees_with_instant() {
    for clock in clocks() {
        let before_start = Instant::now();
        let start = clock.now();
        let after_start = Instant::now();
        while after_start.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        let before_end = Instant::now();
        let end = clock.now();
        let after_end = Instant::now();

        let measured = end.saturating_sub(start);
        let shortest = before_end - after_start;
        let longest = after_end - before_start;
        // Calibration error (quanta's is far below this) plus a few µs of slack.
        let slack = longest / 100 + Duration::from_micros(5);
        assert!(
            measured + slack >= shortest && measured <= longest + slack,
            "{clock:?}: measured {measured:?}, Instant says {shortest:?}..={longest:?}"
        );

        // origin() + now() is an Instant (approximately, on the TSC).
        let before = Instant::now();
        let at = clock.origin() + clock.now();
        let after = Instant::now();
        let slack = after.duration_since(clock.origin()) / 100 + Duration::from_micros(5);
        assert!(
            at + slack >= before && at <= after + slack,
            "{clock:?}: origin() + now() = {at:?} not within {before:?}..={after:?}"
        );
    }
}

#[test]
fn os_clock_is_the_fallback_and_works() {
    let clock = MonotonicClock::os();
    assert_eq!(clock.source(), ClockSource::Os);
    assert_eq!(clock.source().to_string(), "os");
    let a = clock.now();
    let spin_from = Instant::now();
    while spin_from.elapsed() < Duration::from_micros(100) {
        std::hint::spin_loop();
    }
    let b = clock.now();
    assert!(b >= a + Duration::from_micros(100), "{a:?} -> {b:?}");
    // The provided `now_nanos` and the override agree with `now`.
    let boxed: Box<dyn Clock> = Box::new(clock);
    let (n, d, n2) = (boxed.now_nanos(), boxed.now(), boxed.now_nanos());
    assert!(n <= duration_to_nanos(d) && duration_to_nanos(d) <= n2);
}

/// `new()` follows the process-wide decision, and the decision follows the rule applied
/// to what this machine's kernel says right now.
#[test]
fn default_source_follows_the_kernel() {
    let source = MonotonicClock::default_source();
    assert_eq!(MonotonicClock::new().source(), source);
    assert_eq!(MonotonicClock::default().source(), source);
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let clocksource = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .ok();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok();
        let flags = cpuinfo.as_deref().and_then(|c| {
            c.lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == "flags"))
                .map(|(_, v)| v.to_owned())
        });
        let expected = env_allows_tsc(std::env::var("TAILWATER_CLOCK").ok().as_deref())
            && kernel_validated_tsc(clocksource.as_deref(), flags.as_deref());
        assert_eq!(source == ClockSource::Tsc, expected, "{clocksource:?}");
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    assert_eq!(source, ClockSource::Os);
}

#[test]
fn tsc_only_where_the_kernel_validated_it() {
    let good = "fpu tsc msr constant_tsc rep_good nopl nonstop_tsc cpuid rdtscp lm";
    let rows: &[(Option<&str>, Option<&str>, bool)] = &[
        (Some("tsc\n"), Some(good), true),
        (Some("tsc"), Some(good), true),
        // The kernel switched away from the TSC (warp test or watchdog failed).
        (Some("hpet\n"), Some(good), false),
        (Some("acpi_pm\n"), Some(good), false),
        (Some("kvm-clock\n"), Some(good), false),
        (Some("tsc-early\n"), Some(good), false),
        // Unreadable files (no /sys in a container, not Linux).
        (None, Some(good), false),
        (Some("tsc\n"), None, false),
        // Not invariant, or quanta would not read the counter.
        (Some("tsc\n"), Some("tsc constant_tsc rdtscp"), false),
        (Some("tsc\n"), Some("tsc nonstop_tsc rdtscp"), false),
        (Some("tsc\n"), Some("tsc constant_tsc nonstop_tsc"), false),
        // Whole words only.
        (
            Some("tsc\n"),
            Some("xconstant_tsc nonstop_tscx rdtscp"),
            false,
        ),
    ];
    for (i, &(clocksource, flags, safe)) in rows.iter().enumerate() {
        assert_eq!(kernel_validated_tsc(clocksource, flags), safe, "row {i}");
    }
}

/// End to end: in a process started with `TAILWATER_CLOCK=os`, the default clock is the
/// OS clock (the test re-runs itself in a child process with the variable set).
#[test]
fn tailwater_clock_os_forces_the_os_clock_in_a_fresh_process() {
    const NAME: &str = "clock::tests::tailwater_clock_os_forces_the_os_clock_in_a_fresh_process";
    if std::env::var("TAILWATER_CLOCK").as_deref() == Ok("os") {
        assert_eq!(MonotonicClock::default_source(), ClockSource::Os);
        assert_eq!(MonotonicClock::new().source(), ClockSource::Os);
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .args([NAME, "--exact", "--test-threads=1"])
        .env("TAILWATER_CLOCK", "os")
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tailwater_clock_variable_only_ever_forces_the_os_clock() {
    assert!(env_allows_tsc(None));
    assert!(env_allows_tsc(Some("")));
    assert!(env_allows_tsc(Some("auto")));
    assert!(env_allows_tsc(Some(" auto\n")));
    assert!(!env_allows_tsc(Some("os")));
    assert!(!env_allows_tsc(Some("tsc")));
    assert!(!env_allows_tsc(Some("AUTO")));
}
