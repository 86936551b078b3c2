//! Revisions and expectations.
//!
//! Revisions come from one database-wide counter in `meta` (`last_revision`), bumped inside the
//! write transaction that hands the revision out. So the revisions of one record strictly
//! increase, and a record deleted and created again never gets a revision it had before, not
//! even after a restart or after its hub was deleted and recreated.

use outpost_core::{Expected, Revision, StoreError};
use redb::{ReadableTable as _, WriteTransaction};

use crate::error::TxError;
use crate::tables::{LAST_REVISION_KEY, META};

/// Bumps the counter and returns the new revision (the first is 1).
///
/// Opens `meta`, so the caller must not hold it open.
pub(crate) fn next_revision(tx: &WriteTransaction) -> Result<Revision, TxError> {
    let mut meta = tx.open_table(META)?;
    let last = meta.get(LAST_REVISION_KEY)?.map_or(0, |guard| guard.value());
    let next = last
        .checked_add(1)
        .ok_or_else(|| StoreError::Backend("the revision counter is exhausted".into()))?;
    meta.insert(LAST_REVISION_KEY, next)?;
    Ok(Revision(next))
}

/// Checks the revision found (`None`: no record) against what the write expects.
///
/// # Errors
/// [`StoreError::Conflict`] when the record exists but must not, or exists at another revision;
/// [`StoreError::NotFound`] when it is missing but must exist.
pub(crate) fn check_expected(found: Option<Revision>, expected: Expected) -> Result<(), StoreError> {
    match (found, expected) {
        (None, Expected::Absent) | (Some(_), Expected::Present) => Ok(()),
        (Some(found), Expected::Revision(wanted)) if found == wanted => Ok(()),
        (Some(_), Expected::Absent | Expected::Revision(_)) => Err(StoreError::Conflict),
        (None, Expected::Revision(_) | Expected::Present) => Err(StoreError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_map_to_conflict_or_not_found() {
        let r1 = Revision(1);
        let r2 = Revision(2);
        assert!(check_expected(None, Expected::Absent).is_ok());
        assert!(matches!(
            check_expected(Some(r1), Expected::Absent),
            Err(StoreError::Conflict)
        ));
        assert!(check_expected(Some(r1), Expected::Revision(r1)).is_ok());
        assert!(matches!(
            check_expected(Some(r2), Expected::Revision(r1)),
            Err(StoreError::Conflict)
        ));
        assert!(matches!(
            check_expected(None, Expected::Revision(r1)),
            Err(StoreError::NotFound)
        ));
        assert!(check_expected(Some(r2), Expected::Present).is_ok());
        assert!(matches!(
            check_expected(None, Expected::Present),
            Err(StoreError::NotFound)
        ));
    }
}
