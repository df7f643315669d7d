//! The feeding loop both scanners share: collect the leading bytes that decide the
//! format, then hand every byte to the scanner's state machine, step by step.

use crate::sniff::Prefix;
use crate::MediaError;

/// A streaming state machine over the bytes of one file.
pub(crate) trait Walker {
    /// The leading bytes being collected, or `None` once the walk has started.
    fn collecting(&mut self) -> Option<&mut Prefix>;

    /// Judges the collected leading bytes (all of them, or fewer when the file ended
    /// early) and walks them; afterwards `collecting` returns `None`.
    fn start(&mut self) -> Result<(), MediaError>;

    /// Consumes at least one byte of `bytes` (never none) and returns how many.
    fn step(&mut self, bytes: &[u8]) -> Result<usize, MediaError>;

    /// The offset in the file of the next byte to be consumed.
    fn offset_mut(&mut self) -> &mut u64;

    /// Takes the next chunk of the file.
    fn feed_chunk(&mut self, chunk: &[u8]) -> Result<(), MediaError> {
        let mut rest = chunk;
        if let Some(prefix) = self.collecting() {
            let taken = prefix.fill(rest);
            let full = prefix.is_full();
            rest = &rest[taken..];
            if !full {
                return Ok(());
            }
            self.start()?;
        }
        self.walk(rest)
    }

    /// At the end of the file: starts the walk if the file was shorter than the prefix.
    fn start_if_still_collecting(&mut self) -> Result<(), MediaError> {
        match self.collecting() {
            Some(_) => self.start(),
            None => Ok(()),
        }
    }

    fn walk(&mut self, mut bytes: &[u8]) -> Result<(), MediaError> {
        while !bytes.is_empty() {
            let consumed = self.step(bytes)?;
            bytes = &bytes[consumed..];
            let offset = self.offset_mut();
            *offset = offset.saturating_add(consumed as u64);
        }
        Ok(())
    }
}
