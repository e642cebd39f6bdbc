//! Control plane: ACS-compatible REST (identity, rooms, chat, call automation), WebSocket signaling, meeting/call/lobby state machines.

pub mod calls;
