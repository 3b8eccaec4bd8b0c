//! `vcpu_scheduler`: the same program as `vcpu-scheduler`, under the name the graduate
//! OS course's scheduler has, so that its habit (`./vcpu_scheduler 2`, from
//! `target/release/`) works as it is. Not a second program: the whole of it is
//! `src/main.rs`, compiled a second time under this name.

#[path = "../main.rs"]
mod program;

fn main() -> std::process::ExitCode {
    program::main()
}
