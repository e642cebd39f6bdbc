//! What a run does: rooms × participants, who talks (and whether talkers take turns), who
//! publishes video, ramp-up rate, duration; the presets; and how `--shard i/n` splits the
//! participants between several `palaver-load` processes.

use serde::Serialize;
use std::time::Duration;

/// Hard caps so a typo cannot turn the tool into a flood (every loop is bounded by these).
pub const MAX_PARTICIPANTS_TOTAL: u32 = 20_000;
pub const MAX_DURATION: Duration = Duration::from_secs(3_600);
pub const MAX_PER_ROOM: u32 = 1_000;

/// How participants meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum RoomKind {
    /// Group call by id: every participant an external user, no lobby (≤ 350 per call).
    GroupCall,
    /// Meeting created over the meetings REST API with a directory-user organizer (first
    /// participant of each room) and lobby bypass for everyone; up to 1000.
    Meeting,
}

/// The presets of issue #7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// 3-party calls, one talker at a time (turns), many rooms.
    ContactCenter,
    /// One meeting: 350 listeners and 3 talkers.
    TownHall,
    /// One meeting of 50 with simulcast video publishers and 2 talkers.
    VideoMeeting,
    /// A short low-load smoke scenario (CI): 2 calls of 3.
    Smoke,
    /// Mixing density (issue #18): 10 group calls of 10, 2 talkers each talking with their own
    /// spurts, no DTX (everyone sends 50 pps; listeners low-level noise).
    Mixing10,
    /// Mixing density: 30 three-party calls, one talker each, no DTX.
    Mixing3,
    /// Mixing density: one 100-person call, 3 talkers with their own spurts, no DTX.
    Mixing100,
    /// Issue #18's 500 participants per core: 50 group calls of 10, 2 talkers each, no DTX
    /// (`mixing10` at five times the rooms), ramped at 50 joins/s.
    Density500,
    /// Forwarding: one group call, 1 talker heard by 299 listeners (passthrough: the talker's
    /// packets re-sequenced and re-encrypted per listener, no codec work), DTX on so the
    /// listeners send nothing and the server's CPU is the fan-out's.
    Forwarding,
    /// Idle: 1,000 joined participants in 100 group calls of 10 that all keep silent (DTX on,
    /// no talkers), ramped at 50 joins/s: what holding them costs.
    Idle1000,
}

/// A scenario, fully resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scenario {
    pub name: String,
    pub room_kind: RoomKind,
    pub rooms: u32,
    pub participants_per_room: u32,
    /// The first `talkers_per_room` slots of a room talk.
    pub talkers_per_room: u32,
    /// One talker at a time (rotating turns) instead of all talkers with their own spurts.
    pub turn_taking: bool,
    /// The first `video_publishers_per_room` slots publish simulcast video (and watch one
    /// remote camera).
    pub video_publishers_per_room: u32,
    /// The next `video_viewers_per_room` slots watch one remote camera without publishing
    /// (a video town hall's audience: what makes the SFU fan out).
    #[serde(default)]
    pub video_viewers_per_room: u32,
    /// Listeners per room that decode the mix and look for markers (latency probes); the
    /// others only count packets (loss, jitter). Talkers always decode.
    pub decoding_listeners_per_room: u32,
    /// Joins per second across the whole scenario (all shards together).
    pub ramp_per_sec: f64,
    /// Measured steady state after everyone joined.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// How often each talker emits a marker burst.
    #[serde(with = "secs")]
    pub marker_interval: Duration,
    /// Length of one talker's turn when `turn_taking`.
    #[serde(with = "secs")]
    pub turn_length: Duration,
    /// Discontinuous transmission like a browser with DTX on: pauses are not sent and listeners
    /// send nothing. `false`: every participant sends 50 packets/s, as a browser without DTX
    /// does — talkers' pauses and all listeners as low-level noise (−70 dBov, voice flag off).
    pub dtx: bool,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl Preset {
    pub fn scenario(self) -> Scenario {
        let base = Scenario {
            name: String::new(),
            room_kind: RoomKind::GroupCall,
            rooms: 1,
            participants_per_room: 3,
            talkers_per_room: 3,
            turn_taking: true,
            video_publishers_per_room: 0,
            video_viewers_per_room: 0,
            decoding_listeners_per_room: 3,
            ramp_per_sec: 20.0,
            duration: Duration::from_secs(60),
            marker_interval: Duration::from_secs(3),
            turn_length: Duration::from_secs(6),
            dtx: true,
        };
        let mixing = Scenario { turn_taking: false, decoding_listeners_per_room: 1, dtx: false, ..base.clone() };
        match self {
            Preset::ContactCenter => Scenario { name: "contact-center".into(), rooms: 20, ..base },
            Preset::TownHall => Scenario {
                name: "town-hall".into(),
                room_kind: RoomKind::Meeting,
                participants_per_room: 353,
                talkers_per_room: 3,
                turn_taking: false,
                decoding_listeners_per_room: 10,
                ramp_per_sec: 30.0,
                ..base
            },
            Preset::VideoMeeting => Scenario {
                name: "video-meeting".into(),
                room_kind: RoomKind::Meeting,
                participants_per_room: 50,
                talkers_per_room: 2,
                turn_taking: true,
                video_publishers_per_room: 50,
                decoding_listeners_per_room: 5,
                ..base
            },
            Preset::Mixing10 => Scenario {
                name: "mixing-10".into(),
                rooms: 10,
                participants_per_room: 10,
                talkers_per_room: 2,
                ..mixing
            },
            Preset::Mixing3 => {
                Scenario { name: "mixing-3".into(), rooms: 30, participants_per_room: 3, talkers_per_room: 1, ..mixing }
            }
            Preset::Mixing100 => Scenario {
                name: "mixing-100".into(),
                rooms: 1,
                participants_per_room: 100,
                talkers_per_room: 3,
                ..mixing
            },
            Preset::Density500 => Scenario {
                name: "density-500".into(),
                rooms: 50,
                participants_per_room: 10,
                talkers_per_room: 2,
                ramp_per_sec: 50.0,
                ..mixing
            },
            Preset::Forwarding => Scenario {
                name: "forwarding".into(),
                rooms: 1,
                participants_per_room: 300,
                talkers_per_room: 1,
                turn_taking: false,
                decoding_listeners_per_room: 2,
                ramp_per_sec: 50.0,
                ..base
            },
            Preset::Idle1000 => Scenario {
                name: "idle-1000".into(),
                rooms: 100,
                participants_per_room: 10,
                talkers_per_room: 0,
                decoding_listeners_per_room: 0,
                ramp_per_sec: 50.0,
                ..base
            },
            Preset::Smoke => Scenario {
                name: "smoke".into(),
                rooms: 2,
                duration: Duration::from_secs(8),
                marker_interval: Duration::from_secs(2),
                turn_length: Duration::from_secs(4),
                ..base
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}")]
    Invalid(String),
    #[error("shard must look like i/n with 0 <= i < n (got {0:?})")]
    Shard(String),
}

impl Scenario {
    /// Check limits; every run goes through this.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if self.rooms == 0 || self.participants_per_room == 0 {
            return bad("rooms and participants per room must be at least 1".into());
        }
        if self.participants_per_room > MAX_PER_ROOM {
            return bad(format!("at most {MAX_PER_ROOM} participants per room"));
        }
        if self.room_kind == RoomKind::GroupCall && self.participants_per_room > 350 {
            return bad("group calls hold at most 350 participants; use --room-kind meeting".into());
        }
        if u64::from(self.rooms) * u64::from(self.participants_per_room) > u64::from(MAX_PARTICIPANTS_TOTAL) {
            return bad(format!("at most {MAX_PARTICIPANTS_TOTAL} participants in one scenario"));
        }
        if self.talkers_per_room > self.participants_per_room
            || self.video_publishers_per_room + self.video_viewers_per_room > self.participants_per_room
        {
            return bad("talkers, video publishers and video viewers are participants of the room (too many)".into());
        }
        if self.talkers_per_room > 6 {
            return bad("at most 6 talkers per room (each needs its own marker frequency)".into());
        }
        if !(self.ramp_per_sec > 0.0 && self.ramp_per_sec <= 1_000.0) {
            return bad("ramp must be in (0, 1000] joins per second".into());
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!("duration must be in (0, {} s]", MAX_DURATION.as_secs()));
        }
        if self.marker_interval < Duration::from_secs(1) || self.turn_length < Duration::from_millis(500) {
            return bad("marker interval must be >= 1 s and turns >= 0.5 s".into());
        }
        Ok(())
    }

    pub fn total_participants(&self) -> u32 {
        self.rooms * self.participants_per_room
    }

    /// Role of slot `slot` in a room.
    pub fn role(&self, slot: u32) -> Role {
        let talker = slot < self.talkers_per_room;
        Role {
            talker_index: talker.then_some(slot),
            video: slot < self.video_publishers_per_room,
            watches_video: slot < self.video_publishers_per_room + self.video_viewers_per_room,
            decodes: talker || slot < self.talkers_per_room + self.decoding_listeners_per_room,
        }
    }

    /// Time to join everyone at the ramp rate.
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.total_participants()) / self.ramp_per_sec)
    }
}

/// What one participant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// Its talker index in the room (marker frequency), when it talks.
    pub talker_index: Option<u32>,
    pub video: bool,
    /// Whether it receives one remote camera (publishers and viewers).
    pub watches_video: bool,
    /// Whether it decodes the mix (latency probe).
    pub decodes: bool,
}

/// `--shard i/n`: this process runs the participants whose global index is `i` modulo `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = ScenarioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ScenarioError::Shard(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let index: u32 = i.trim().parse().map_err(|_| err())?;
        let count: u32 = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count || count > 10_000 {
            return Err(err());
        }
        Ok(Self { index, count })
    }
}

/// One participant this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seat {
    /// Index over the whole scenario (rooms × slots), the same in every shard.
    pub global: u32,
    pub room: u32,
    pub slot: u32,
}

impl Shard {
    /// This shard's participants in join order. Slot 0 of every room comes first (in a
    /// meeting it is the organizer, who must be there before external users are let in).
    pub fn seats(&self, scenario: &Scenario) -> Vec<Seat> {
        let per = scenario.participants_per_room;
        let mut seats: Vec<Seat> = (0..scenario.total_participants())
            .filter(|g| g % self.count == self.index)
            .map(|global| Seat { global, room: global / per, slot: global % per })
            .collect();
        seats.sort_by_key(|s| (s.slot != 0, s.global));
        seats
    }

    /// This shard's share of the ramp rate (the scenario's rate is for all shards).
    pub fn ramp_per_sec(&self, scenario: &Scenario) -> f64 {
        scenario.ramp_per_sec / f64::from(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn presets_are_valid_and_shaped_as_the_issue_says() {
        for p in [Preset::ContactCenter, Preset::TownHall, Preset::VideoMeeting, Preset::Smoke] {
            p.scenario().validate().unwrap();
        }
        let th = Preset::TownHall.scenario();
        assert_eq!((th.participants_per_room - th.talkers_per_room, th.talkers_per_room), (350, 3));
        let cc = Preset::ContactCenter.scenario();
        assert!(cc.turn_taking && cc.participants_per_room == 3);
        assert_eq!(Preset::VideoMeeting.scenario().participants_per_room, 50);
    }

    #[test]
    fn the_issue_18_presets_have_its_shapes() {
        let shape = |p: Preset| {
            let s = p.scenario();
            s.validate().unwrap();
            (s.rooms, s.participants_per_room, s.talkers_per_room, s.dtx)
        };
        assert_eq!(shape(Preset::Mixing10), (10, 10, 2, false));
        assert_eq!(shape(Preset::Mixing3), (30, 3, 1, false));
        assert_eq!(shape(Preset::Mixing100), (1, 100, 3, false));
        assert_eq!(shape(Preset::Density500), (50, 10, 2, false));
        assert_eq!(shape(Preset::Forwarding), (1, 300, 1, true));
        assert_eq!(shape(Preset::Idle1000), (100, 10, 0, true));
        assert_eq!(Preset::Idle1000.scenario().total_participants(), 1_000);
        assert!((0..10).all(|slot| Preset::Idle1000.scenario().role(slot).talker_index.is_none()));
    }

    #[test]
    fn validation_refuses_out_of_range() {
        let ok = Preset::Smoke.scenario();
        let bad = [
            Scenario { rooms: 0, ..ok.clone() },
            Scenario { participants_per_room: 351, ..ok.clone() },
            Scenario { talkers_per_room: 4, ..ok.clone() },
            Scenario { ramp_per_sec: 0.0, ..ok.clone() },
            Scenario { ramp_per_sec: f64::NAN, ..ok.clone() },
            Scenario { duration: Duration::ZERO, ..ok.clone() },
            Scenario { rooms: 10_000, participants_per_room: 3, ..ok.clone() },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
        Scenario { room_kind: RoomKind::Meeting, participants_per_room: 351, ..ok }.validate().unwrap();
    }

    #[test]
    fn shards_partition_every_participant_exactly_once() {
        let scenario = Scenario { rooms: 7, participants_per_room: 5, ..Preset::Smoke.scenario() };
        for n in 1..=6 {
            let mut all = HashSet::new();
            let mut total = 0;
            for i in 0..n {
                let seats = Shard { index: i, count: n }.seats(&scenario);
                total += seats.len();
                all.extend(seats.iter().map(|s| s.global));
                for s in &seats {
                    assert_eq!(s.room * 5 + s.slot, s.global);
                }
            }
            assert_eq!((total, all.len()), (35, 35), "n = {n}");
        }
    }

    #[test]
    fn organizers_join_first() {
        let scenario = Scenario { rooms: 3, participants_per_room: 4, ..Preset::Smoke.scenario() };
        let seats = Shard::default().seats(&scenario);
        assert!(seats[..3].iter().all(|s| s.slot == 0));
        assert!(seats[3..].iter().all(|s| s.slot != 0));
    }

    #[test]
    fn shard_parsing() {
        assert_eq!("1/3".parse::<Shard>().unwrap(), Shard { index: 1, count: 3 });
        for bad in ["3/3", "0/0", "x/2", "1", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let s = Preset::TownHall.scenario();
        assert_eq!(Shard { index: 0, count: 2 }.ramp_per_sec(&s), 15.0);
    }

    #[test]
    fn roles_by_slot() {
        let s = Preset::TownHall.scenario();
        assert_eq!(s.role(0), Role { talker_index: Some(0), video: false, watches_video: false, decodes: true });
        assert_eq!(s.role(5), Role { talker_index: None, video: false, watches_video: false, decodes: true });
        assert_eq!(s.role(13), Role { talker_index: None, video: false, watches_video: false, decodes: false });
        assert!(Preset::VideoMeeting.scenario().role(49).video);
        let viewers = Scenario { video_publishers_per_room: 2, video_viewers_per_room: 3, ..s.clone() };
        assert_eq!((viewers.role(1).video, viewers.role(1).watches_video), (true, true));
        assert_eq!((viewers.role(4).video, viewers.role(4).watches_video), (false, true));
        assert!(!viewers.role(5).watches_video);
        let crowded =
            Scenario { participants_per_room: 4, video_publishers_per_room: 2, video_viewers_per_room: 3, ..s };
        assert!(crowded.validate().is_err());
    }
}
