//! The opsflow CLI's library: the local pipeline (engine + handlers + local cloud) that
//! `opsflow demo`, `opsflow invoke` and the end-to-end tests share.
pub mod fixtures;
pub mod local;
pub mod object_store;
