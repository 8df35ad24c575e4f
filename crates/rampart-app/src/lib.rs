//! Rampart's request path: config → snapshot → router → access checks → handler → filters → log.
pub mod filters;
pub mod handlers;
