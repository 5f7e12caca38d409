//! What operators need: a scoped clear of the cache's entries
//! (`Cache::clear`) and the memory health of its Redis (`Cache::health`).

mod clear;
mod health;

pub use self::clear::{ClearProgress, Clearing};
pub use self::health::{Health, NodeHealth};
