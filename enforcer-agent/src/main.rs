//! The `enforcer` command.
fn main() -> anyhow::Result<()> {
    Ok(())
}
