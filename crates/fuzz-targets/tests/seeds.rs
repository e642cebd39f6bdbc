//! Every fuzz target's body, in the ordinary test build: over each file of its committed seed
//! corpus (`fuzz/corpus/<target>/`), then over deterministic mutations of those seeds (bit
//! flips, interesting bytes, inserts, deletes, duplicated ranges, truncation, splices of two
//! seeds; at most `MUTATIONS` inputs or `BUDGET` of time per target). A failing input is
//! printed in hex with the seed and mutation it came from. This is `make test`'s fuzz check;
//! the coverage-guided libFuzzer runs are `make fuzz` (docs/fuzzing.md). Also: the libFuzzer
//! binaries (`fuzz/Cargo.toml`, `fuzz/fuzz_targets/`) are exactly the bodies of
//! [`palaver_fuzz_targets::TARGETS`], each a one-line wrapper, and every target has seeds.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mutated inputs per target, at most.
const MUTATIONS: usize = 5_000;
/// Time for the mutations of one target, at most (the slow bodies sign RSA tokens or run a
/// DTLS handshake per input; the seeds themselves always all run).
const BUDGET: Duration = Duration::from_millis(1_500);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn seeds(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).expect("seed")))
        .collect()
}

fn hex(data: &[u8]) -> String {
    let shown: String = data.iter().take(512).map(|b| format!("{b:02x}")).collect();
    if data.len() > 512 { format!("{shown}… ({} bytes)", data.len()) } else { shown }
}

/// Runs one input; on a panic, says which input it was and re-raises.
fn run_one(name: &str, body: fn(&[u8]), origin: &str, data: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(data))) {
        eprintln!("fuzz target {name} failed on {origin}: {}", hex(data));
        resume_unwind(panic);
    }
}

const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, b'\r', b'\n', b':'];

/// One to four stacked mutations of `data` (another seed for splices).
fn mutate(rng: &mut StdRng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = out.len();
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            }
            2 => {
                let i = rng.gen_range(0..=len);
                out.insert(i, rng.r#gen());
            }
            3 if len > 0 => {
                let i = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - i).min(16));
                out.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - i).min(32));
                let copy = out[i..i + n].to_vec();
                let at = rng.gen_range(0..=len);
                out.splice(at..at, copy);
            }
            5 if len > 0 => out.truncate(rng.gen_range(0..len)),
            6 if !other.is_empty() => {
                let cut = rng.gen_range(0..=len);
                let from = rng.gen_range(0..other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                out.splice(i..i, bytes);
            }
        }
    }
    out
}

fn check(name: &str) {
    let body = palaver_fuzz_targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is not in TARGETS"))
        .1;
    let seeds = seeds(name);
    assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
    for (file, data) in &seeds {
        run_one(name, body, &format!("seed {file}"), data);
    }
    // The same sequence every run: a failure here reproduces with `cargo test`.
    let mut rng = StdRng::seed_from_u64(
        name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)),
    );
    let start = Instant::now();
    let mut done = 0;
    while done < MUTATIONS && start.elapsed() < BUDGET {
        let (file, data) = &seeds[rng.gen_range(0..seeds.len())];
        let other = &seeds[rng.gen_range(0..seeds.len())].1;
        let input = mutate(&mut rng, data, other);
        run_one(name, body, &format!("mutation {done} of seed {file}"), &input);
        done += 1;
    }
    println!("{name}: {} seeds, {done} mutations in {:?}", seeds.len(), start.elapsed());
}

macro_rules! seed_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

seed_tests!(
    access_token,
    ca_request,
    chat_request,
    dtls_record,
    hmac_header,
    idp_token,
    opus_toc,
    rtcp_compound,
    rtp_extensions,
    rtp_packet,
    sdp_offer,
    signaling_frame,
    srtp_unprotect,
    stream_frame,
    stun_binding,
    trunk_sdp,
    sip_message,
);

/// The libFuzzer binaries are the bodies tested here: every `[[bin]]` of `fuzz/Cargo.toml` is a
/// target of `TARGETS` (and the reverse), its file is the one-line wrapper around that body,
/// and each target has a test above.
#[test]
fn the_libfuzzer_binaries_are_exactly_these_bodies() {
    let names: Vec<&str> = palaver_fuzz_targets::TARGETS.iter().map(|(n, _)| *n).collect();
    let mut tested = TESTED.to_vec();
    let mut listed = names.clone();
    tested.sort_unstable();
    listed.sort_unstable();
    assert_eq!(tested, listed, "a target without a seed test, or the reverse");

    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut bins: Vec<String> = manifest
        .split("[[bin]]")
        .skip(1)
        .map(|section| {
            let line = section.lines().find(|l| l.trim_start().starts_with("name")).expect("bin name");
            line.split('"').nth(1).expect("quoted name").to_string()
        })
        .collect();
    bins.sort_unstable();
    assert_eq!(bins, listed, "fuzz/Cargo.toml's [[bin]]s differ from TARGETS");

    for name in names {
        let path = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let call = format!("libfuzzer_sys::fuzz_target!(|data: &[u8]| palaver_fuzz_targets::{name}::run(data));");
        let code: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("#!"))
            .collect();
        assert_eq!(code, [call.as_str()], "{} is not the one-line wrapper of its body", path.display());
    }
}
