//! The player, sans-IO: a queue of plays, each a list of decoded 48 kHz mono sources, read
//! out one 20 ms frame per tick. It reports PlayStarted when a play's first frame goes out,
//! PlayCompleted after its last (never for a loop), PlayCanceled when `cancel_all` or an
//! interrupting play ends it. Music on hold and recognize prompts use their own players.

use std::collections::VecDeque;
use std::sync::Arc;

use palaver_signaling::gateway::legs::{LegEventKind, OperationTag, ResultInfo};

/// Samples per 20 ms frame at 48 kHz.
pub const FRAME: usize = 960;

/// One accepted play with its audio ready.
#[derive(Debug, Clone)]
pub struct Play {
    pub sources: Vec<Arc<[i16]>>,
    pub looped: bool,
    /// Raw ids of the only listeners (empty: everyone).
    pub play_to: Vec<String>,
    pub tag: OperationTag,
}

#[derive(Debug)]
struct Active {
    play: Play,
    source: usize,
    at: usize,
    started: bool,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Player {
    current: Option<Active>,
    queue: VecDeque<Play>,
    /// Who hears the frame `next_frame` returned last (empty: everyone).
    audience: Vec<String>,
}

impl Player {
    /// Queues `play`, or with `interrupt` cancels everything first and plays it now.
    pub fn enqueue(&mut self, play: Play, interrupt: bool, events: &mut Vec<(OperationTag, LegEventKind)>) {
        if interrupt {
            self.cancel_all(events);
        }
        self.queue.push_back(play);
    }

    /// Ends the current and queued plays (PlayCanceled 8508 each).
    pub fn cancel_all(&mut self, events: &mut Vec<(OperationTag, LegEventKind)>) {
        for play in self.current.take().map(|a| a.play).into_iter().chain(self.queue.drain(..)) {
            events.push((play.tag, LegEventKind::PlayCanceled(ResultInfo::canceled())));
        }
    }

    /// Ends everything without events (a recognize prompt interrupted by a tone).
    pub fn stop_silently(&mut self) {
        self.current = None;
        self.queue.clear();
    }

    pub fn is_idle(&self) -> bool {
        self.current.is_none() && self.queue.is_empty()
    }

    /// Who hears the current play (empty: everyone); `None` while idle.
    pub fn listeners(&self) -> Option<&[String]> {
        self.current.as_ref().map(|a| a.play.play_to.as_slice())
    }

    /// Who hears the frame [`Self::next_frame`] returned last: the raw ids of its play's
    /// `playTo` (empty: everyone).
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// Fills `out` with the next frame (zero-padded at a play's end); false when idle.
    pub fn next_frame(&mut self, out: &mut [i16; FRAME], events: &mut Vec<(OperationTag, LegEventKind)>) -> bool {
        loop {
            if self.current.is_none() {
                let Some(play) = self.queue.pop_front() else { return false };
                self.current = Some(Active { play, source: 0, at: 0, started: false });
            }
            let active = self.current.as_mut().expect("set above");
            if active.play.sources.iter().all(|s| s.is_empty()) {
                // Nothing to play: complete at once.
                let play = self.current.take().expect("active").play;
                events.push((play.tag.clone(), LegEventKind::PlayStarted));
                events.push((play.tag, LegEventKind::PlayCompleted(ResultInfo::success())));
                continue;
            }
            if !active.started {
                active.started = true;
                events.push((active.play.tag.clone(), LegEventKind::PlayStarted));
            }
            if self.audience != active.play.play_to {
                self.audience.clone_from(&active.play.play_to);
            }
            let mut filled = 0;
            while filled < FRAME {
                let source = &active.play.sources[active.source];
                let take = (source.len() - active.at).min(FRAME - filled);
                out[filled..filled + take].copy_from_slice(&source[active.at..active.at + take]);
                filled += take;
                active.at += take;
                if active.at >= source.len() {
                    active.at = 0;
                    active.source += 1;
                    if active.source >= active.play.sources.len() {
                        if active.play.looped {
                            active.source = 0;
                        } else {
                            out[filled..].fill(0);
                            let play = self.current.take().expect("active").play;
                            events.push((play.tag, LegEventKind::PlayCompleted(ResultInfo::success())));
                            return true;
                        }
                    }
                }
            }
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(c: &str) -> OperationTag {
        OperationTag { operation_context: Some(c.into()), operation_callback_uri: None }
    }

    fn play(c: &str, samples: usize, looped: bool) -> Play {
        Play { sources: vec![vec![1i16; samples].into()], looped, play_to: vec![], tag: tag(c) }
    }

    fn kinds(events: &[(OperationTag, LegEventKind)]) -> Vec<(String, &'static str)> {
        events
            .iter()
            .map(|(t, k)| {
                let name = match k {
                    LegEventKind::PlayStarted => "started",
                    LegEventKind::PlayCompleted(_) => "completed",
                    LegEventKind::PlayCanceled(r) if r.sub_code == 8508 => "canceled",
                    _ => "other",
                };
                (t.operation_context.clone().unwrap(), name)
            })
            .collect()
    }

    #[test]
    fn plays_in_order_started_then_completed_with_the_tail_padded() {
        let (mut player, mut events, mut frame) = (Player::default(), Vec::new(), [0i16; FRAME]);
        player.enqueue(play("p1", 1500, false), false, &mut events);
        player.enqueue(play("p2", 960, false), false, &mut events);
        assert!(player.next_frame(&mut frame, &mut events));
        assert!(player.next_frame(&mut frame, &mut events));
        assert_eq!((frame[539], frame[540]), (1, 0), "1500 - 960 = 540 samples, then silence");
        assert!(player.next_frame(&mut frame, &mut events));
        assert!(!player.next_frame(&mut frame, &mut events));
        let expected = [("p1", "started"), ("p1", "completed"), ("p2", "started"), ("p2", "completed")];
        assert_eq!(kinds(&events), expected.map(|(a, b)| (a.to_owned(), b)));
    }

    #[test]
    fn a_loop_runs_until_canceled_and_an_interrupting_play_cancels_the_queue() {
        let (mut player, mut events, mut frame) = (Player::default(), Vec::new(), [0i16; FRAME]);
        player.enqueue(play("loop", 100, true), false, &mut events);
        player.enqueue(play("queued", 100, false), false, &mut events);
        for _ in 0..500 {
            assert!(player.next_frame(&mut frame, &mut events));
        }
        player.enqueue(play("now", 100, false), true, &mut events);
        assert!(player.next_frame(&mut frame, &mut events));
        player.cancel_all(&mut events);
        assert!(player.is_idle());
        let expected = [
            ("loop", "started"),
            ("loop", "canceled"),
            ("queued", "canceled"),
            ("now", "started"),
            ("now", "completed"),
        ];
        assert_eq!(kinds(&events), expected.map(|(a, b)| (a.to_owned(), b)));
    }
}
