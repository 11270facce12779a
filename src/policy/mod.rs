//! Pure decisions, no I/O: how upstream names become the names an agent sees.
//! (Per-agent allow/deny and rewriting join this module with the agent-policy work.)

pub mod naming;
