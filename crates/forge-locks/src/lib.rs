//! Read/write/append locks on gitignore-style path globs.
//!
//! Forge runs several coding agents on one repository at once. Each task declares which files it
//! reads, writes and appends to as **claims** (`src/api/**`, `docs/*.md`, `CHANGELOG.md`), and holds
//! them while its agent runs, so two agents never write the same file. This crate is that lock
//! manager; it depends on no other Forge crate and can be used alone.
//!
//! # What is here
//!
//! - [`Pattern`]: a validated, normalized repo-relative glob.
//! - [`LockMode`]: `Read` (shared), `Write` (exclusive), `Append` (shared with other appenders).
//! - [`Claim`]: a pattern plus a mode; [`OwnerId`]: who holds claims (a task attempt).
//! - [`LockError`]: what can go wrong, with the pattern or owners involved.
//!
//! # Example
//!
//! ```
//! use forge_locks::{Claim, LockMode};
//!
//! let claim = Claim::new("src/api/", LockMode::Write)?;
//! assert_eq!(claim.pattern.as_str(), "src/api/**");
//! assert!(Claim::new("../secrets", LockMode::Read).is_err());
//! assert!(LockMode::Append.compatible_with(LockMode::Append));
//! assert!(!LockMode::Append.compatible_with(LockMode::Write));
//! # Ok::<(), forge_locks::LockError>(())
//! ```

mod claim;
mod error;
mod pattern;

pub use claim::{Claim, LockMode, OwnerId};
pub use error::LockError;
pub use pattern::Pattern;
