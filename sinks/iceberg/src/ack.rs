//! Acknowledgement: the highest source position whose changes are durably committed in every
//! table they touch. Advanced only after the catalog swap of every pending table succeeded,
//! never before (STYLE §10).

use tidemark_model::Position;

/// Written vs committed positions of the sink.
#[derive(Debug, Default, Clone)]
pub struct Ack {
    /// End of the last complete transaction written (buffered, not committed).
    written: Option<Position>,
    /// End of the last transaction committed everywhere.
    committed: Option<Position>,
}

impl Ack {
    /// A complete transaction was written.
    pub fn written(&mut self, end: Position) {
        self.written = Some(end);
    }

    /// Every table committed: what was written is durable.
    pub fn all_committed(&mut self) -> Option<Position> {
        if self.written.is_some() {
            self.committed = self.written;
        }
        self.committed
    }

    pub fn committed(&self) -> Option<Position> {
        self.committed
    }

    pub fn last_written(&self) -> Option<Position> {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_model::{Lsn, PgPosition};

    fn end(l: u64) -> Position {
        Position::from(PgPosition::end(Lsn(l), Lsn(l + 1)))
    }

    #[test]
    fn acks_only_after_commit() {
        let mut a = Ack::default();
        a.written(end(10));
        assert_eq!(a.committed(), None);
        assert_eq!(a.all_committed(), Some(end(10)));
        a.written(end(20));
        assert_eq!(a.committed(), Some(end(10)));
    }
}
