//! Talker selection: picks the top-K active talkers from per-frame audio levels, with
//! hysteresis (onset frames, hang-over, replacement margin) so selection does not flap.
//!
//! Levels come from the RFC 6464 extension or, for senders without it, from the packet
//! size heuristic in [`super::opus_toc::level_from_size`]. Nothing here decodes audio.

/// Selection tuning. Levels are RFC 6464 dBov (0 loudest, 127 silent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TalkerConfig {
    /// How many talkers are decoded and mixed at most (K).
    pub max_talkers: usize,
    /// A frame counts as speech when its level is at or below this many -dBov.
    pub speech_threshold_dbov: u8,
    /// Consecutive speech frames before an input may be selected.
    pub onset_frames: u32,
    /// Consecutive non-speech frames before a selected talker is released.
    pub hangover_frames: u32,
    /// A waiting candidate replaces the weakest selected talker only when louder by this
    /// many dB (smoothed).
    pub replace_margin_db: u8,
}

impl Default for TalkerConfig {
    fn default() -> Self {
        Self { max_talkers: 3, speech_threshold_dbov: 50, onset_frames: 2, hangover_frames: 25, replace_margin_db: 6 }
    }
}

/// Per-input activity state, updated once per tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Activity {
    /// Smoothed loudness in dB above silence (127 - dBov), 0 when quiet.
    pub score: f32,
    pub speech_run: u32,
    pub quiet_run: u32,
    pub selected: bool,
}

impl Activity {
    /// Feeds this tick's level (`None`: nothing played, i.e. silence).
    pub fn observe(&mut self, config: &TalkerConfig, level: Option<(u8, bool)>) {
        let speech = match level {
            Some((dbov, voice)) => voice && dbov <= config.speech_threshold_dbov,
            None => false,
        };
        if speech {
            let loudness = f32::from(127 - level.map_or(127, |(dbov, _)| dbov.min(127)));
            // fast attack
            self.score += (loudness - self.score) * 0.5;
            self.speech_run = self.speech_run.saturating_add(1);
            self.quiet_run = 0;
        } else {
            // slow release
            self.score *= 0.9;
            self.quiet_run = self.quiet_run.saturating_add(1);
            self.speech_run = 0;
        }
    }
}

/// Result of one selection step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectionChange {
    pub changed: bool,
}

/// Anything that may carry an [`Activity`] (a mixer input slot, or the activity itself).
pub trait ActivitySlot {
    fn activity(&self) -> Option<&Activity>;
    fn activity_mut(&mut self) -> Option<&mut Activity>;
}

impl ActivitySlot for Activity {
    fn activity(&self) -> Option<&Activity> {
        Some(self)
    }
    fn activity_mut(&mut self) -> Option<&mut Activity> {
        Some(self)
    }
}

/// Updates `selected` flags in `inputs` (slots without an activity are skipped).
/// Returns whether the selected set changed. At most one replacement per call.
pub fn select_talkers<S: ActivitySlot>(config: &TalkerConfig, inputs: &mut [S]) -> SelectionChange {
    let mut changed = false;
    let mut count = 0usize;
    // 1. release talkers that have been quiet for the hang-over time
    for activity in inputs.iter_mut().filter_map(S::activity_mut) {
        if activity.selected {
            if activity.quiet_run >= config.hangover_frames {
                activity.selected = false;
                changed = true;
            } else {
                count += 1;
            }
        }
    }
    // 2. fill free places with the loudest eligible candidates
    while count < config.max_talkers {
        let Some(best) = best_candidate(config, inputs) else { break };
        if let Some(activity) = inputs[best].activity_mut() {
            activity.selected = true;
        }
        count += 1;
        changed = true;
    }
    // 3. when full, a clearly louder candidate replaces the weakest talker
    if count == config.max_talkers
        && count > 0
        && let Some(best) = best_candidate(config, inputs)
        && let Some(weakest) = weakest_selected(inputs)
    {
        let best_score = inputs[best].activity().map_or(0.0, |a| a.score);
        let weakest_score = inputs[weakest].activity().map_or(0.0, |a| a.score);
        if best_score >= weakest_score + f32::from(config.replace_margin_db) {
            if let Some(a) = inputs[weakest].activity_mut() {
                a.selected = false;
            }
            if let Some(a) = inputs[best].activity_mut() {
                a.selected = true;
            }
            changed = true;
        }
    }
    SelectionChange { changed }
}

fn best_candidate<S: ActivitySlot>(config: &TalkerConfig, inputs: &[S]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (index, activity) in inputs.iter().enumerate() {
        let Some(a) = activity.activity() else { continue };
        if a.selected || a.speech_run < config.onset_frames {
            continue;
        }
        if best.is_none_or(|(_, score)| a.score > score) {
            best = Some((index, a.score));
        }
    }
    best.map(|(index, _)| index)
}

fn weakest_selected<S: ActivitySlot>(inputs: &[S]) -> Option<usize> {
    let mut weakest: Option<(usize, f32)> = None;
    for (index, activity) in inputs.iter().enumerate() {
        let Some(a) = activity.activity() else { continue };
        if a.selected && weakest.is_none_or(|(_, score)| a.score < score) {
            weakest = Some((index, a.score));
        }
    }
    weakest.map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: &TalkerConfig, acts: &mut [Activity], levels: &[Option<(u8, bool)>]) -> bool {
        for (a, level) in acts.iter_mut().zip(levels) {
            a.observe(config, *level);
        }
        select_talkers(config, acts).changed
    }

    fn selected(acts: &[Activity]) -> Vec<usize> {
        acts.iter().enumerate().filter(|(_, a)| a.selected).map(|(i, _)| i).collect()
    }

    #[test]
    fn top_k_loudest_are_selected_after_onset() {
        let config = TalkerConfig { max_talkers: 2, ..TalkerConfig::default() };
        let mut acts = vec![Activity::default(); 4];
        let levels = [Some((20, true)), Some((30, true)), Some((40, true)), Some((100, false))];
        run(&config, &mut acts, &levels);
        assert!(selected(&acts).is_empty(), "one frame is not enough");
        run(&config, &mut acts, &levels);
        assert_eq!(selected(&acts), vec![0, 1]);
    }

    #[test]
    fn short_pauses_do_not_release_and_long_ones_do() {
        let config = TalkerConfig::default();
        let mut acts = vec![Activity::default(); 2];
        for _ in 0..5 {
            run(&config, &mut acts, &[Some((20, true)), None]);
        }
        assert_eq!(selected(&acts), vec![0]);
        for _ in 0..10 {
            run(&config, &mut acts, &[None, None]);
        }
        assert_eq!(selected(&acts), vec![0], "a 200 ms pause keeps the talker");
        for _ in 0..20 {
            run(&config, &mut acts, &[None, None]);
        }
        assert!(selected(&acts).is_empty());
    }

    #[test]
    fn replacement_needs_a_clear_margin() {
        let config = TalkerConfig { max_talkers: 1, ..TalkerConfig::default() };
        let mut acts = vec![Activity::default(); 2];
        for _ in 0..4 {
            run(&config, &mut acts, &[Some((30, true)), None]);
        }
        // a slightly louder voice does not take over
        for _ in 0..10 {
            run(&config, &mut acts, &[Some((30, true)), Some((27, true))]);
        }
        assert_eq!(selected(&acts), vec![0]);
        // a much louder one does, and only one switch happens
        let mut switches = 0;
        for _ in 0..10 {
            switches += usize::from(run(&config, &mut acts, &[Some((30, true)), Some((10, true))]));
        }
        assert_eq!(selected(&acts), vec![1]);
        assert_eq!(switches, 1);
    }

    #[test]
    fn voice_flag_false_is_not_speech() {
        let config = TalkerConfig::default();
        let mut acts = vec![Activity::default(); 1];
        for _ in 0..5 {
            run(&config, &mut acts, &[Some((10, false))]);
        }
        assert!(selected(&acts).is_empty());
    }
}
