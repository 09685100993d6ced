//! Project automation: `cargo xtask <task>`.
fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        _ => {
            eprintln!("tasks: (none yet)");
            Ok(())
        }
    }
}
