//! The local disk cache (see ARCHITECTURE.md). Built in issue 3.
