//! Resource bounds every front-end applies before it calls the service:
//! separate concurrency slots for long-poll fetches, produces and everything
//! else (so consumers can never starve producers), and one memory budget for
//! request and response bodies across all connections.
//!
//! The budget is a semaphore of bytes. A body's bytes are reserved as they
//! arrive (a client that sends headers and stalls holds nothing) and a fetch
//! answer's bytes before it is read from disk; a reservation is released
//! when its request is done or its answer has been written (or the
//! connection dropped). A request that cannot get its slot or its bytes
//! within `wait` is answered "unavailable, retry after" instead of queueing
//! without bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which concurrency bound a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A fetch that may long-poll.
    Fetch,
    /// A produce.
    Produce,
    /// Everything else that touches the service (topics, offsets, groups, producer init).
    Other,
}

/// The configured bounds.
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    pub fetches: usize,
    pub produces: usize,
    pub others: usize,
    /// Bytes of bodies held across all connections.
    pub memory_budget: usize,
    /// How long a request waits for a slot or for budget before being refused.
    pub wait: Duration,
}

/// A refusal for want of a slot or of memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("collector busy: {0}; retry later")]
pub struct Busy(pub String);

/// Bytes reserved from the memory budget; released on drop.
#[derive(Debug, Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Keeps at most `n` bytes, returning the rest to the budget.
    pub fn shrink_to(&mut self, n: usize) {
        if let Some(p) = &mut self.permit {
            let extra = p.num_permits().saturating_sub(n);
            if extra > 0 {
                drop(p.split(extra));
            }
        }
    }

    fn merge(&mut self, other: Reservation) {
        match (&mut self.permit, other.permit) {
            (Some(a), Some(b)) => a.merge(b),
            (None, b) => self.permit = b,
            (_, None) => {}
        }
    }
}

/// The slots and the budget, shared by every connection.
pub struct Gates {
    fetch: Arc<Semaphore>,
    produce: Arc<Semaphore>,
    other: Arc<Semaphore>,
    budget: Arc<Semaphore>,
    limits: GateLimits,
}

impl Gates {
    /// Gates with these bounds.
    pub fn new(limits: GateLimits) -> Gates {
        Gates {
            fetch: Arc::new(Semaphore::new(limits.fetches.max(1))),
            produce: Arc::new(Semaphore::new(limits.produces.max(1))),
            other: Arc::new(Semaphore::new(limits.others.max(1))),
            budget: Arc::new(Semaphore::new(limits.memory_budget.max(1))),
            limits,
        }
    }

    /// A concurrency slot of `class`, waiting at most the configured time.
    pub async fn slot(&self, class: Class) -> Result<OwnedSemaphorePermit, Busy> {
        let (sem, what) = match class {
            Class::Fetch => (&self.fetch, "all fetch slots are in use"),
            Class::Produce => (&self.produce, "all produce slots are in use"),
            Class::Other => (&self.other, "all request slots are in use"),
        };
        match tokio::time::timeout(self.limits.wait, sem.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Busy(what.into())),
        }
    }

    /// Reserves `n` more bytes into `r`, waiting at most the configured time.
    pub async fn reserve(&self, r: &mut Reservation, n: usize) -> Result<(), Busy> {
        if n == 0 {
            return Ok(());
        }
        let busy = || {
            Busy(format!(
                "the memory budget for bodies ({} bytes) is in use",
                self.limits.memory_budget
            ))
        };
        if r.bytes() + n > self.limits.memory_budget {
            return Err(busy());
        }
        let n32 = u32::try_from(n).map_err(|_| busy())?;
        match tokio::time::timeout(
            self.limits.wait,
            self.budget.clone().acquire_many_owned(n32),
        )
        .await
        {
            Ok(Ok(p)) => {
                r.merge(Reservation { permit: Some(p) });
                Ok(())
            }
            _ => Err(busy()),
        }
    }

    /// Bytes of the budget not reserved now.
    pub fn budget_available(&self) -> usize {
        self.budget.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates(budget: usize) -> Gates {
        Gates::new(GateLimits {
            fetches: 1,
            produces: 1,
            others: 1,
            memory_budget: budget,
            wait: Duration::from_millis(50),
        })
    }

    #[tokio::test]
    async fn classes_have_separate_slots() {
        let g = gates(100);
        let _f = g.slot(Class::Fetch).await.unwrap();
        assert!(g.slot(Class::Fetch).await.is_err(), "fetch slots are full");
        assert!(
            g.slot(Class::Produce).await.is_ok(),
            "produces are not affected"
        );
        assert!(g.slot(Class::Other).await.is_ok());
    }

    #[tokio::test]
    async fn the_budget_refuses_past_its_size_and_frees_on_drop() {
        let g = gates(100);
        let mut a = Reservation::default();
        g.reserve(&mut a, 60).await.unwrap();
        g.reserve(&mut a, 30).await.unwrap();
        assert_eq!(a.bytes(), 90);
        let mut b = Reservation::default();
        assert!(g.reserve(&mut b, 20).await.is_err(), "only 10 left");
        a.shrink_to(50);
        assert_eq!(g.budget_available(), 50);
        g.reserve(&mut b, 20).await.unwrap();
        drop(a);
        assert_eq!(g.budget_available(), 80);
        assert!(
            g.reserve(&mut b, 200).await.is_err(),
            "larger than the whole budget"
        );
    }
}
