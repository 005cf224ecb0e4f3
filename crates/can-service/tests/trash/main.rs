//! Deletion, the trash, restores, peers' records and tombstones, of the real binary over
//! real HTTP (docs/sync-api.md, "Deletion"); and SIGKILL in the middle of deletions and
//! restores, again and again.
//!
//! One test binary, split by concern: [`api`], [`sync`], [`expiry`], [`crash`].

mod api;
mod common;
mod crash;
mod expiry;
mod sync;
