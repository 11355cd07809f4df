//! [`CommandBatch`]: commands buffered and submitted with one `CMD_SYNC` (SPEC D5).

use super::*;

/// Up to [`BATCH`] buffered commands that end in exactly one `CMD_SYNC` (SPEC D5).
///
/// Adding a command to a full batch first publishes the buffered ones without a sync, as
/// Linux's `arm_smmu_cmdq_batch` does, so a logical invalidation of any size costs one sync.
pub struct CommandBatch<'q, H: Hal + ?Sized, R: RegisterAccess + ?Sized> {
    queue: &'q CommandQueue,
    hal: &'q H,
    regs: &'q R,
    cmds: Vec<Command, BATCH>,
    issued: u32,
    error: Option<Error>,
}

impl<'q, H: Hal + ?Sized, R: RegisterAccess + ?Sized> CommandBatch<'q, H, R> {
    /// An empty batch on `queue`.
    pub fn new(queue: &'q CommandQueue, hal: &'q H, regs: &'q R) -> Self {
        Self {
            queue,
            hal,
            regs,
            cmds: Vec::new(),
            issued: 0,
            error: None,
        }
    }

    /// Adds a command, publishing the batch first when it is full.
    pub fn add(&mut self, cmd: Command) -> Result<(), Error> {
        if self.cmds.is_full() {
            self.flush(false)?;
        }
        // Cannot fail: the batch was just emptied if it was full.
        let _ = self.cmds.push(cmd);
        Ok(())
    }

    /// Commands added so far (the `CMD_SYNC` not included).
    pub fn len(&self) -> u32 {
        self.issued + self.cmds.len() as u32
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn flush(&mut self, sync: bool) -> Result<(), Error> {
        let r = self.queue.issue(self.hal, self.regs, &self.cmds, sync);
        self.issued += self.cmds.len() as u32;
        self.cmds.clear();
        match r {
            // A rejected command is reported at the end; the others still run.
            Err(e @ Error::CommandRejected(_)) => {
                self.error.get_or_insert(e);
                Ok(())
            }
            other => other,
        }
    }

    /// Publishes the rest and one `CMD_SYNC`, and waits for it.
    pub fn submit(mut self) -> Result<(), Error> {
        self.flush(true)?;
        match self.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
