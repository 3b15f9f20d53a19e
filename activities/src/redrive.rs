//! A redrive wave over a quarter's dead letters, run by the workflow's `RedriveDeadLetters`
//! and by `gradesync dlq replay`. A dead batch goes again under its own key with its own
//! bytes, unless its outcome must be settled first (see [`crate::settle`]): then a receipt
//! lookup either settles it synced or retires it, and only a retired batch's records are
//! cut into new batches. A batch whose lookup cannot tell and that cannot be resent as it
//! is stays dead for the next wave.

use std::collections::HashSet;

use gradesync_govapi::Quarter;

use crate::gov::GovClient;
use crate::model::{Redriven, SchoolRedriven};
use crate::settle::{self, Lookup};
use crate::store::{Store, StoreError};

/// Settles what must be settled, puts the rest back to be sent, and says how much per
/// school.
pub async fn wave(
    gov: &GovClient,
    store: &Store,
    quarter: &Quarter,
) -> Result<Redriven, StoreError> {
    let mut redriven = Redriven::default();
    for letter in store.dead_letters_to_look_up(quarter).await? {
        let school = school(&mut redriven, &letter.school_id);
        match settle::look_up(gov, store, letter.batch_id).await? {
            Lookup::Committed { synced, .. } => {
                school.batches += 1;
                school.synced += synced;
            }
            Lookup::NotCommitted => {
                school.batches += 1;
                school.records += store.retire_dead_batch(letter.batch_id).await?;
            }
            Lookup::Unknown(_) => {}
        }
    }
    let open = store.dead_letters(quarter).await?;
    store.requeue_dead_letters(quarter).await?;
    let left: HashSet<_> = store
        .dead_letters(quarter)
        .await?
        .into_iter()
        .map(|d| d.batch_id)
        .collect();
    for letter in open {
        if left.contains(&letter.batch_id) {
            continue;
        }
        let school = school(&mut redriven, &letter.school_id);
        school.batches += 1;
        school.records += letter.records;
    }
    redriven.schools.retain(|s| s.batches > 0);
    redriven.stuck = left.len() as u64;
    Ok(redriven)
}

fn school<'a>(redriven: &'a mut Redriven, school_id: &str) -> &'a mut SchoolRedriven {
    let at = match redriven
        .schools
        .iter()
        .position(|s| s.school_id == school_id)
    {
        Some(at) => at,
        None => {
            redriven.schools.push(SchoolRedriven {
                school_id: school_id.to_string(),
                ..SchoolRedriven::default()
            });
            redriven.schools.len() - 1
        }
    };
    &mut redriven.schools[at]
}
