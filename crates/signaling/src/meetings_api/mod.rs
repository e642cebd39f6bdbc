//! Meetings REST API (palaver's own; not part of the ACS surface): create a
//! directory-style meeting (organizer, co-organizers, presenters, policy; join link,
//! 12-digit meeting id + passcode), read, change policy, delete, and start/stop
//! recording and transcription on a live meeting or any live conversation.
//!
//! Callers are directory users (`Authorization: Bearer <access token>`) or the server
//! API (HMAC, like the ACS APIs). Reference: `docs/signaling.md`.

mod directory;
mod routes;

pub use directory::{MeetingDirectory, MeetingRecord, generate_meeting_code, generate_passcode};
pub use routes::{CreateMeeting, MeetingView, routes};
