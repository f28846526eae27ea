//! Request slots: a generational arena of in-flight attempts, and the waker that records a
//! queued attempt as ready.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::Wake;

use tailwater_core::clock::ManualClock;
use tailwater_core::limiter::{OwnedPermit, Waiter};

use super::Sim;
use super::event::{Handle, handle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Queued,
    ServerQueue,
    Running,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) generation: u32,
    pub(super) live: bool,
    pub(super) req: u32,
    pub(super) tier: u8,
    pub(super) attempt: u8,
    /// When the request's first attempt was sent.
    pub(super) start: u64,
    pub(super) arrival: u64,
    pub(super) deadline: u64,
    pub(super) abandoned: bool,
    /// Whether the request's first attempt arrived while the load was at or above capacity.
    pub(super) overloaded: bool,
    pub(super) stage: Stage,
    pub(super) work: f64,
    pub(super) service: f64,
    pub(super) started: u64,
    pub(super) permit: Option<OwnedPermit<ManualClock>>,
    pub(super) waiter: Option<Waiter<ManualClock>>,
}

#[derive(Debug)]
pub(super) struct ReadyWaker {
    pub(super) id: Handle,
    pub(super) ready: Arc<Mutex<Vec<Handle>>>,
}

impl Wake for ReadyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.id);
    }
}

impl Sim<'_> {
    pub(super) fn alloc(&mut self, req: u32, tier: u8, attempt: u8, start: u64) -> Handle {
        let mut deadline = self.now.saturating_add(self.timeout_ns);
        if self.deadline_ns > 0 {
            deadline = deadline.min(start.saturating_add(self.deadline_ns));
        }
        let slot = Slot {
            generation: 0,
            live: true,
            req,
            tier,
            attempt,
            start,
            arrival: self.now,
            deadline,
            abandoned: false,
            overloaded: self.overloaded_at(start),
            stage: Stage::Queued,
            work: 0.0,
            service: 0.0,
            started: 0,
            permit: None,
            waiter: None,
        };
        match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                let generation = s.generation.wrapping_add(1);
                *s = Slot { generation, ..slot };
                handle(i, generation)
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 live requests");
                self.slots.push(slot);
                handle(i, 0)
            }
        }
    }

    pub(super) fn slot(&mut self, h: Handle) -> Option<&mut Slot> {
        let s = self.slots.get_mut((h & 0xFFFF_FFFF) as usize)?;
        (s.live && s.generation == (h >> 32) as u32).then_some(s)
    }

    pub(super) fn release(&mut self, h: Handle) {
        let i = (h & 0xFFFF_FFFF) as u32;
        let s = &mut self.slots[i as usize];
        s.live = false;
        s.permit = None;
        s.waiter = None;
        self.free.push(i);
    }
}
