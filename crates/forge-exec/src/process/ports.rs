//! A range of TCP ports per running attempt (`FORGE_PORT_BASE`, `FORGE_PORT_COUNT`), so
//! parallel dev servers and test databases do not collide.
//!
//! Ranges are slots of [`PORTS_PER_ATTEMPT`] ports between [`FIRST_PORT`] and [`LAST_PORT`];
//! a slot is held from the spawn to the attempt's end, and no two running attempts of this
//! process share one. Each process starts its search at a slot derived from its pid, so two
//! Forge runs on one machine rarely pick the same ranges (the ports are not reserved with the
//! kernel: a range is a convention between Forge and the agent).

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Ports in each attempt's range.
pub const PORTS_PER_ATTEMPT: u16 = 10;
/// The lowest port handed out.
pub const FIRST_PORT: u16 = 40_000;
/// Ports below this are handed out (above it most systems pick ephemeral ports).
pub const LAST_PORT: u16 = 60_000;

const SLOTS: u16 = (LAST_PORT - FIRST_PORT) / PORTS_PER_ATTEMPT;

static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port range held by a running attempt, given back when dropped.
#[derive(Debug)]
pub struct PortRange {
    slot: u16,
}

impl PortRange {
    /// Takes a free range; `None` when all are held (then the attempt gets no range).
    pub fn take() -> Option<Self> {
        let mut taken = TAKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        #[allow(clippy::cast_possible_truncation)] // reduced modulo SLOTS
        let start = (std::process::id() % u32::from(SLOTS)) as u16;
        let slot = (0..SLOTS)
            .map(|i| (start + i) % SLOTS)
            .find(|s| !taken.contains(s))?;
        taken.insert(slot);
        Some(Self { slot })
    }

    /// The first port of the range.
    pub fn base(&self) -> u16 {
        FIRST_PORT + self.slot * PORTS_PER_ATTEMPT
    }
}

impl Drop for PortRange {
    fn drop(&mut self) {
        TAKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.slot);
    }
}
