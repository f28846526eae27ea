//! Tied requests next to hedging, where the tail comes from **queueing** ("The Tail at
//! Scale": tying helps when a copy would wait behind slow work in one server's queue).
//!
//! [`SERVERS`] servers, one worker and a FIFO queue each, at [`LOAD`] utilisation. Service
//! is about 2 ms (lognormal, σ 0.3), except 0.5 % of calls that take 50–100 ms and hold up
//! the queue behind them. Messages take [`NET`] one way. Side by side, on the same arrivals
//! and service times:
//!
//! - **no hedging**: one copy to a random server;
//! - **tailwater hedge**: tailwater-core's [`Hedger`] (p95, every attempt recorded) within
//!   the shared [`RetryBudget`] (≤ 5 %), the second copy to another server; the loser is
//!   cancelled when the winner's answer arrives (dropped if still queued, run to the end if
//!   running: a server does not stop work in progress);
//! - **tailwater tied**: both copies at once (the second after 2 × [`NET`], as in the
//!   paper), to two servers, each running tailwater-core's [`TieRegistry`]: the server that
//!   starts its copy first sends a cancel to the other, which drops its copy if it is still
//!   queued (or when it arrives later);
//! - **two copies, no tie** (the reference for the cost): both copies always run.
//!
//! Extra load is executions (copies that started running) per call, minus one.

use std::collections::VecDeque;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tailwater_core::clock::ManualClock;
use tailwater_core::outbound::{
    Arrival, BudgetConfig, Extra, HedgeConfig, Hedger, RetryBudget, TieConfig, TieRegistry,
    TieTicket,
};

use super::events::{Events, ns};
use crate::error::SimError;
use crate::rng::Xoshiro256PlusPlus;

/// Servers.
pub const SERVERS: usize = 10;
/// Utilisation of each server by single copies.
pub const LOAD: f64 = 0.6;
/// One-way message delay, seconds.
pub const NET: f64 = 0.000_25;
/// Simulated seconds.
pub const SECONDS: f64 = 30.0;
/// Calls before this are not measured (the hedger's first period must fill).
pub const WARM_UP: f64 = 2.0;
/// Mean service time, seconds (2 ms × e^(σ²/2) for 99.5 %, 75 ms for 0.5 %).
const MEAN_SERVICE: f64 = 0.995 * 0.002 * 1.046 + 0.005 * 0.075;

/// How the client sends a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TieMode {
    /// One copy.
    None,
    /// tailwater's hedge (p95, budget).
    Hedge,
    /// tailwater's tied requests.
    Tied,
    /// Two copies at once, no tie (both run).
    Both,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct TieRow {
    /// The client.
    pub clients: &'static str,
    /// Call latency quantiles, milliseconds.
    pub p50_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// p99.9.
    pub p999_ms: f64,
    /// Executions per call minus one.
    pub extra_load: f64,
    /// Copies dropped by a tie (queued or on arrival).
    pub tie_dropped: u64,
}

#[derive(Debug)]
enum Ev {
    Call,
    Hedge(usize),
    /// A copy reaches its server.
    Arrive(usize),
    /// A server's worker finishes.
    Done(usize),
    /// An answer reaches the client.
    Reply(usize),
    /// The client's cancel of a copy reaches its server.
    ClientCancel(usize),
    /// A peer's tie cancel reaches a server: (server, call).
    TieCancel(usize, usize),
}

struct Copy {
    call: usize,
    server: usize,
    ticket: Option<TieTicket>,
    cancelled: bool,
    work: f64,
}

struct Call {
    start: u64,
    done: bool,
    copies: Vec<usize>,
}

struct Server {
    queue: VecDeque<usize>,
    busy: Option<usize>,
    ties: TieRegistry<ManualClock>,
}

fn service(rng: &mut Xoshiro256PlusPlus) -> f64 {
    if rng.uniform() < 0.005 {
        0.05 + 0.05 * rng.uniform()
    } else {
        0.002 * (0.3 * rng.normal()).exp()
    }
}

/// The whole run's state.
struct Run {
    mode: TieMode,
    clock: ManualClock,
    ev: Events<Ev>,
    servers: Vec<Server>,
    copies: Vec<Copy>,
    calls: Vec<Call>,
    work: Xoshiro256PlusPlus,
    pick: Xoshiro256PlusPlus,
    hedger: Hedger<ManualClock>,
    budget: RetryBudget<ManualClock>,
    executions: u64,
    tie_dropped: u64,
    lat: Histogram<u64>,
}

impl Run {
    fn other_server(&mut self, not: usize) -> usize {
        let k = (self.pick.uniform() * (SERVERS - 1) as f64) as usize % (SERVERS - 1);
        if k >= not { k + 1 } else { k }
    }

    fn send(&mut self, t: u64, call: usize, server: usize) -> usize {
        let id = self.copies.len();
        let work = service(&mut self.work);
        self.copies.push(Copy {
            call,
            server,
            ticket: None,
            cancelled: false,
            work,
        });
        self.calls[call].copies.push(id);
        self.ev.push(t + ns(NET), Ev::Arrive(id));
        id
    }

    fn on_call(&mut self, t: u64) {
        let call = self.calls.len();
        self.calls.push(Call {
            start: t,
            done: false,
            copies: Vec::new(),
        });
        self.budget.deposit();
        let first = (self.pick.uniform() * SERVERS as f64) as usize % SERVERS;
        self.send(t, call, first);
        match self.mode {
            TieMode::None => {}
            TieMode::Hedge => {
                if let Some(d) = self.hedger.delay() {
                    self.ev.push(t + ns(d.as_secs_f64()), Ev::Hedge(call));
                }
            }
            TieMode::Tied | TieMode::Both => {
                let second = self.other_server(first);
                self.send(t + ns(2.0 * NET), call, second);
            }
        }
    }

    fn on_arrive(&mut self, id: usize) {
        let (call, server) = (self.copies[id].call, self.copies[id].server);
        if self.copies[id].cancelled {
            return;
        }
        if self.mode == TieMode::Tied {
            match self.servers[server]
                .ties
                .arrive(&call.to_string(), Duration::from_secs(1))
            {
                Arrival::Track(ticket) => self.copies[id].ticket = Some(ticket),
                Arrival::Drop => {
                    self.tie_dropped += 1;
                    return;
                }
                Arrival::Untracked => {}
            }
        }
        self.servers[server].queue.push_back(id);
        self.next(server);
    }

    /// Starts the next runnable copy on an idle `server`.
    fn next(&mut self, server: usize) {
        if self.servers[server].busy.is_some() {
            return;
        }
        while let Some(id) = self.servers[server].queue.pop_front() {
            if self.copies[id].cancelled {
                continue;
            }
            if let Some(ticket) = &self.copies[id].ticket {
                if !self.servers[server].ties.start(ticket) {
                    self.tie_dropped += 1;
                    continue;
                }
                // Tell the peer (every other copy of this call) to cancel.
                let call = self.copies[id].call;
                for &other in &self.calls[call].copies {
                    if other != id {
                        let peer = self.copies[other].server;
                        let at = self.now() + ns(NET);
                        self.ev.push(at, Ev::TieCancel(peer, call));
                    }
                }
            }
            self.executions += 1;
            self.servers[server].busy = Some(id);
            let at = self.now() + ns(self.copies[id].work);
            self.ev.push(at, Ev::Done(server));
            return;
        }
    }

    fn now(&self) -> u64 {
        use tailwater_core::clock::Clock;
        self.clock.now_nanos()
    }

    fn on_reply(&mut self, t: u64, id: usize) {
        let call = self.copies[id].call;
        let c = &mut self.calls[call];
        let own = t.saturating_sub(c.start);
        if c.done {
            return;
        }
        c.done = true;
        if c.start >= ns(WARM_UP) {
            self.lat.saturating_record(own / 1000);
        }
        self.hedger.record(Duration::from_nanos(own));
        let losers: Vec<usize> = c.copies.iter().copied().filter(|&o| o != id).collect();
        for o in losers {
            if self.mode == TieMode::Hedge {
                // The loser's time until it was cancelled (as in the hedge scenario).
                self.ev.push(t + ns(NET), Ev::ClientCancel(o));
            }
        }
    }
}

/// Runs one client mode.
pub fn run_mode(clients: &'static str, mode: TieMode, seed: u64) -> Result<TieRow, SimError> {
    let clock = ManualClock::new();
    let mut servers = Vec::new();
    for _ in 0..SERVERS {
        servers.push(Server {
            queue: VecDeque::new(),
            busy: None,
            ties: TieRegistry::with_clock(TieConfig::default(), clock.clone())?,
        });
    }
    let mut run = Run {
        mode,
        hedger: Hedger::with_clock(HedgeConfig::default(), clock.clone())?,
        budget: RetryBudget::with_clock(BudgetConfig::default(), clock.clone())?,
        clock,
        ev: Events::new(),
        servers,
        copies: Vec::new(),
        calls: Vec::new(),
        work: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x71ED),
        pick: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5E7),
        executions: 0,
        tie_dropped: 0,
        lat: Histogram::<u64>::new_with_max(60_000_000, 3)
            .map_err(|e| SimError::invalid("histogram", e.to_string()))?,
    };
    let mut arrivals = Xoshiro256PlusPlus::seed_from_u64(seed);
    let rate = LOAD * SERVERS as f64 / MEAN_SERVICE;
    let end = ns(SECONDS);
    run.ev.push(ns(arrivals.exp1() / rate), Ev::Call);
    while let Some((t, e)) = run.ev.pop() {
        run.clock.set(Duration::from_nanos(t));
        match e {
            Ev::Call => {
                if t > end {
                    continue;
                }
                run.on_call(t);
                run.ev.push(t + ns(arrivals.exp1() / rate), Ev::Call);
            }
            Ev::Hedge(call) => {
                if run.calls[call].done || !run.budget.try_withdraw(Extra::Hedge) {
                    continue;
                }
                let first = run.copies[run.calls[call].copies[0]].server;
                let second = run.other_server(first);
                run.send(t, call, second);
            }
            Ev::Arrive(id) => run.on_arrive(id),
            Ev::Done(server) => {
                if let Some(id) = run.servers[server].busy.take() {
                    run.ev.push(t + ns(NET), Ev::Reply(id));
                }
                run.next(server);
            }
            Ev::Reply(id) => run.on_reply(t, id),
            Ev::ClientCancel(id) => run.copies[id].cancelled = true,
            Ev::TieCancel(server, call) => {
                let ttl = Duration::from_secs(1);
                run.servers[server].ties.cancel(&call.to_string(), ttl);
            }
        }
    }
    let q = |x: f64| run.lat.value_at_quantile(x) as f64 / 1000.0;
    Ok(TieRow {
        clients,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        p999_ms: q(0.999),
        extra_load: run.executions as f64 / run.calls.len().max(1) as f64 - 1.0,
        tie_dropped: run.tie_dropped,
    })
}

/// The four clients side by side.
pub fn run(seed: u64) -> Result<Vec<TieRow>, SimError> {
    [
        ("no hedging", TieMode::None),
        ("tailwater hedge (p95, 5 % budget)", TieMode::Hedge),
        ("tailwater tied (TieRegistry per server)", TieMode::Tied),
        ("two copies, no tie (reference)", TieMode::Both),
    ]
    .into_iter()
    .map(|(name, mode)| run_mode(name, mode, seed))
    .collect()
}
