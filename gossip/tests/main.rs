//! Integration tests of muster-gossip: real instances on 127.0.0.1 with
//! OS-assigned ports, one test binary.
//!
//! Every wait polls the member list with a generous deadline; nothing
//! passes because a sleep happened to be long enough.

mod cluster;
mod common;
mod encryption;
mod events;
mod failure;
