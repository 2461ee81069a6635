//! How far a long operation has come, as the API and the console show it.

use serde::{Deserialize, Serialize};

/// `{"done": …, "total": …}` in the operation's own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}
