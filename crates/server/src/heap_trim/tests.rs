use super::*;

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_pages_inside_the_heap_go_back_to_the_os() {
    // On its own thread (its own arena, away from the other tests): 64 MiB in 4 KiB blocks,
    // then every block freed but one in 64, so the arena cannot shrink from its top and the
    // free memory sits in whole pages between live blocks: what glibc keeps without a trim.
    let (before, after) = std::thread::spawn(|| {
        let mut blocks: Vec<Vec<u8>> = (0..16_384).map(|i| vec![i as u8; 4096]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
        drop(blocks);
        let before = rss_anon_kib();
        assert!(trim(), "malloc_trim released nothing");
        let after = rss_anon_kib();
        drop(kept);
        (before, after)
    })
    .join()
    .unwrap();
    assert!(before - after.min(before) > 32 * 1024, "RssAnon {before} KiB -> {after} KiB");
}
