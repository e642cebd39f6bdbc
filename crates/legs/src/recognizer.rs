//! DTMF recognition, sans-IO on virtual time (milliseconds since the leg started): the
//! prompt plays, then the initial-silence timer runs until the first tone; each tone restarts
//! the inter-tone timer; the max-tone count, a stop tone or (for `choices`) the first tone
//! ends it. Result codes are ACS's (reference §3.7): 8531 max tones, 8514 stop tone, 8533
//! choice matched; failures 8510 initial silence, 8532 inter-tone timeout, 8547 no choice.

use palaver_signaling::gateway::legs::{DtmfTone, LegEventKind, RecognizeRequest, ResultInfo};

/// What the runtime must do after feeding the recognizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Stop the prompt (a tone arrived and `interrupt_prompt` is set).
    StopPrompt,
    /// Finished: send this event.
    Done(LegEventKind),
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Recognizer {
    request: RecognizeRequest,
    tones: Vec<DtmfTone>,
    /// While the prompt plays: `None` (no timer).
    deadline: Option<u64>,
    prompting: bool,
}

impl Recognizer {
    /// Starts; `prompting` while prompts play (timers start at [`Self::prompt_done`]).
    pub fn new(request: RecognizeRequest, now: u64, prompting: bool) -> Self {
        let deadline = (!prompting).then(|| now + u64::from(request.initial_silence_timeout_ms));
        Self { request, tones: Vec::new(), deadline, prompting }
    }

    pub fn request(&self) -> &RecognizeRequest {
        &self.request
    }

    /// The prompts finished playing: the initial-silence timer starts (unless tones came).
    pub fn prompt_done(&mut self, now: u64) {
        if self.prompting {
            self.prompting = false;
            let timeout = if self.tones.is_empty() {
                self.request.initial_silence_timeout_ms
            } else {
                self.request.inter_tone_timeout_ms
            };
            self.deadline = Some(now + u64::from(timeout));
        }
    }

    /// A tone of the target.
    pub fn on_tone(&mut self, now: u64, tone: DtmfTone) -> Step {
        if !self.request.choices.is_empty() {
            let label = self.request.choices.iter().find(|c| c.tone == tone).map(|c| c.label.clone());
            return Step::Done(match label {
                Some(label) => LegEventKind::RecognizeCompleted {
                    result: ResultInfo::new(200, 8533, "Action completed, DTMF option matched."),
                    tones: vec![tone],
                    choice: Some(label),
                },
                None => LegEventKind::RecognizeFailed {
                    result: ResultInfo::new(
                        400,
                        8547,
                        "Action failed, recognized phrase does not match a valid option.",
                    ),
                    failed_source_index: None,
                },
            });
        }
        if self.request.stop_tones.contains(&tone) {
            return Step::Done(self.completed(ResultInfo::new(200, 8514, "Action completed, stop tone detected.")));
        }
        self.tones.push(tone);
        if self.tones.len() as u32 >= self.request.max_tones.max(1) {
            return Step::Done(self.completed(ResultInfo::new(200, 8531, "Action completed, max digits received.")));
        }
        let was_prompting = self.prompting;
        if was_prompting && self.request.interrupt_prompt {
            self.prompting = false;
        }
        if !self.prompting {
            self.deadline = Some(now + u64::from(self.request.inter_tone_timeout_ms));
        }
        if was_prompting && self.request.interrupt_prompt { Step::StopPrompt } else { Step::Continue }
    }

    /// Runs the timers; `Some` when one expired.
    pub fn poll(&mut self, now: u64) -> Option<LegEventKind> {
        let deadline = self.deadline?;
        if now < deadline {
            return None;
        }
        self.deadline = None;
        Some(if self.tones.is_empty() {
            LegEventKind::RecognizeFailed {
                result: ResultInfo::new(400, 8510, "Action failed, initial silence timeout reached."),
                failed_source_index: None,
            }
        } else {
            LegEventKind::RecognizeFailed {
                result: ResultInfo::new(400, 8532, "Action failed, inter-digit silence timeout reached."),
                failed_source_index: None,
            }
        })
    }

    /// When the next timer expires.
    pub fn deadline(&self) -> Option<u64> {
        self.deadline
    }

    fn completed(&self, result: ResultInfo) -> LegEventKind {
        LegEventKind::RecognizeCompleted { result, tones: self.tones.clone(), choice: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_signaling::gateway::legs::{DtmfChoice, OperationTag};

    fn request(max_tones: u32, stop: &[u8]) -> RecognizeRequest {
        RecognizeRequest {
            target: "8:acs:caller".into(),
            prompts: vec![],
            interrupt_prompt: true,
            interrupt_media: false,
            initial_silence_timeout_ms: 5000,
            inter_tone_timeout_ms: 2000,
            max_tones,
            stop_tones: stop.iter().map(|&t| DtmfTone(t)).collect(),
            choices: vec![],
            tag: OperationTag::default(),
        }
    }

    fn sub_code(kind: &LegEventKind) -> u32 {
        match kind {
            LegEventKind::RecognizeCompleted { result, .. } | LegEventKind::RecognizeFailed { result, .. } => {
                result.sub_code
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn collects_max_tones() {
        let mut r = Recognizer::new(request(3, &[]), 0, false);
        assert_eq!(r.on_tone(1000, DtmfTone(1)), Step::Continue);
        assert_eq!(r.on_tone(2500, DtmfTone(2)), Step::Continue);
        assert_eq!(r.poll(4499), None, "inter-tone timer runs from the last tone");
        let Step::Done(done) = r.on_tone(4000, DtmfTone(3)) else { panic!() };
        assert_eq!(sub_code(&done), 8531);
        assert!(
            matches!(done, LegEventKind::RecognizeCompleted { ref tones, .. } if tones == &[DtmfTone(1), DtmfTone(2), DtmfTone(3)])
        );
    }

    #[test]
    fn initial_silence_starts_after_the_prompt() {
        let mut r = Recognizer::new(request(4, &[]), 0, true);
        assert_eq!(r.poll(60_000), None, "no timer while the prompt plays");
        r.prompt_done(60_000);
        assert_eq!(r.poll(64_999), None);
        assert_eq!(sub_code(&r.poll(65_000).unwrap()), 8510);
        assert_eq!(r.poll(70_000), None, "fires once");
    }

    #[test]
    fn inter_tone_timeout_and_stop_tone() {
        let mut r = Recognizer::new(request(4, &[11]), 0, false);
        r.on_tone(100, DtmfTone(5));
        assert_eq!(sub_code(&r.poll(2100).unwrap()), 8532);
        let mut r = Recognizer::new(request(4, &[11]), 0, false);
        r.on_tone(100, DtmfTone(5));
        let Step::Done(done) = r.on_tone(200, DtmfTone(11)) else { panic!() };
        assert_eq!(sub_code(&done), 8514);
        assert!(matches!(done, LegEventKind::RecognizeCompleted { ref tones, .. } if tones == &[DtmfTone(5)]));
    }

    #[test]
    fn a_tone_interrupts_the_prompt_when_asked() {
        let mut r = Recognizer::new(request(2, &[]), 0, true);
        assert_eq!(r.on_tone(300, DtmfTone(1)), Step::StopPrompt);
        assert_eq!(r.deadline(), Some(2300));
        let mut keep = request(2, &[]);
        keep.interrupt_prompt = false;
        let mut r = Recognizer::new(keep, 0, true);
        assert_eq!(r.on_tone(300, DtmfTone(1)), Step::Continue);
        assert_eq!(r.deadline(), None, "timers wait for the prompt's end");
        r.prompt_done(1000);
        assert_eq!(r.deadline(), Some(3000), "inter-tone after a tone during the prompt");
    }

    #[test]
    fn choices_match_by_tone() {
        let mut req = request(1, &[]);
        req.choices = vec![DtmfChoice { label: "sales".into(), tone: DtmfTone(1) }];
        let mut r = Recognizer::new(req.clone(), 0, false);
        let Step::Done(done) = r.on_tone(10, DtmfTone(1)) else { panic!() };
        assert!(matches!(done, LegEventKind::RecognizeCompleted { choice: Some(ref l), .. } if l == "sales"));
        assert_eq!(sub_code(&done), 8533);
        let mut r = Recognizer::new(req, 0, false);
        let Step::Done(done) = r.on_tone(10, DtmfTone(2)) else { panic!() };
        assert_eq!(sub_code(&done), 8547);
    }
}
