//! The `palaver-load` binary: parse the command line, run the scenario, exit with the verdict.

fn main() {
    std::process::exit(palaver_load::cli::main_with_args(std::env::args_os()));
}
