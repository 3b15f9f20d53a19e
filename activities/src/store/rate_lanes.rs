//! The rate-limit lanes every worker process sharing the database draws its request starts
//! from, so that together they stay under the API's request rate. A limit of `capacity`
//! requests per window has `capacity` lanes, and each lane's consecutive requests leave at
//! least a window apart: then no window holds more than one request of each lane, so no
//! more than `capacity` in all, whatever the other lanes do. A lane's next start is
//! therefore cut from when its last request really left (reported with
//! [`Store::settle_rate_slot`]), and while that report is outstanding the lane's next claim
//! waits for it, or for the time by which that request leaves or never does.

use sqlx::{Any, Transaction};

use super::model::{ClockReading, LaneStart, Now, RateSlot, SlotReach};
use super::{Backend, Store, StoreError};

/// The advisory lock of rate claims on PostgreSQL ("gradrate" in ASCII). Claims read and
/// write `rate_lanes` only, so they need not queue behind the store's other writers: a
/// claim that waits for a batch's commit starts its request late.
const RATE_LOCK: i64 = 0x6772_6164_7261_7465;

/// The PostgreSQL server's wall clock in Unix ms, at this statement (not the transaction's
/// start, which `now()` would give).
const DB_NOW_MS: &str = "CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)";

/// One lane as a claim reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lane {
    lane: u32,
    /// The lane's earliest next start, from what is known of its last request.
    free_at_ms: i64,
    /// Set while its last request has not said when it left: it leaves by then or never.
    departs_by_ms: Option<i64>,
}

/// What a claim does, decided from the lanes as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Grant { lane: u32, slot: i64 },
    NotYet(i64),
    Unsettled(i64),
}

impl Store {
    /// Claims a start time under the named limit of at most `capacity` requests in any
    /// `window_ms`: the earliest-free lane's, and spread `window_ms / capacity` after the
    /// latest start of any lane, so a window's requests leave one by one instead of as a
    /// burst. The caller promises that the request leaves within `leave_within_ms` of the
    /// start or not at all, and says which with [`Store::settle_rate_slot`]; until then the
    /// lane's next start waits for that report, or for that deadline.
    ///
    /// One transaction under the rate lock, so callers in any number of tasks, processes
    /// or hosts never share a lane slot. `now` is read once the lock is held: a claim that
    /// waited for another must not be handed a start that passed while it waited.
    /// [`Now::Store`] reads the database server's clock on PostgreSQL, so workers on hosts
    /// whose clocks disagree still cut starts on one clock. `reach` says which slots the
    /// caller takes: one too far ahead is left, and the answer is [`RateSlot::NotYet`] with
    /// the time to ask again.
    pub async fn claim_rate_slot(
        &self,
        name: &str,
        capacity: u32,
        window_ms: i64,
        now: Now,
        reach: SlotReach,
        leave_within_ms: i64,
    ) -> Result<RateSlot, StoreError> {
        if window_ms < 0 || capacity == 0 || leave_within_ms < 0 {
            return Err(StoreError::InvalidArgument(
                "a rate limit needs at least one lane, a non-negative window and deadline".into(),
            ));
        }
        let mut tx = self.locked_tx(RATE_LOCK).await?;
        let (mut lanes, db_now) = self.read_lanes(&mut tx, name, capacity).await?;
        if lanes.len() < capacity as usize {
            insert_lanes(&mut tx, name, capacity).await?;
            lanes = self.read_lanes(&mut tx, name, capacity).await?.0;
        }
        let now_ms = match (now, db_now) {
            (Now::At(ms), _) => ms,
            (Now::Store, Some(ms)) => ms,
            (Now::Store, None) => self.read_now(&mut tx, now).await?,
        };
        for lane in lanes.iter_mut() {
            if let Some(by) = lane.departs_by_ms.filter(|by| *by <= now_ms) {
                // Its request left by then or never: count it as leaving then.
                lane.free_at_ms = lane.free_at_ms.max(by + window_ms);
                lane.departs_by_ms = None;
                sqlx::query(
                    "UPDATE rate_lanes SET departs_by_ms = NULL, free_at_ms = \
                     CASE WHEN free_at_ms < $1 THEN $1 ELSE free_at_ms END \
                     WHERE name = $2 AND lane = $3",
                )
                .bind(lane.free_at_ms)
                .bind(name)
                .bind(i64::from(lane.lane))
                .execute(&mut *tx)
                .await?;
            }
        }
        let answer = match plan(&lanes, now_ms, capacity, window_ms, reach) {
            Claim::Grant { lane, slot } => {
                let departs_by_ms = slot + leave_within_ms;
                sqlx::query(
                    "UPDATE rate_lanes SET free_at_ms = $1, start_ms = $2, departs_by_ms = $3 \
                     WHERE name = $4 AND lane = $5",
                )
                .bind(slot + window_ms)
                .bind(slot)
                .bind(departs_by_ms)
                .bind(name)
                .bind(i64::from(lane))
                .execute(&mut *tx)
                .await?;
                RateSlot::Granted(LaneStart {
                    lane,
                    start_ms: slot,
                    departs_by_ms,
                })
            }
            Claim::NotYet(at) => RateSlot::NotYet(at),
            Claim::Unsettled(at) => RateSlot::Unsettled(at),
        };
        tx.commit().await?;
        Ok(answer)
    }

    /// What became of the request `slot` was granted for: it left at `left_at_ms` (on the
    /// store's clock, the latest it can have been), or never (`None`). The lane's next
    /// start is then at least a window after it left. One statement, atomic on its own:
    /// it only touches a lane whose last start is still `slot`'s, which no claim grants
    /// from before this report or the deadline. Returns `false` when the lane had already
    /// moved on (its deadline passed and a later start was claimed).
    pub async fn settle_rate_slot(
        &self,
        name: &str,
        window_ms: i64,
        slot: LaneStart,
        left_at_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let free_at = left_at_ms.unwrap_or(slot.start_ms).max(slot.start_ms) + window_ms;
        let settled = sqlx::query(
            "UPDATE rate_lanes SET departs_by_ms = NULL, free_at_ms = \
             CASE WHEN free_at_ms < $1 THEN $1 ELSE free_at_ms END \
             WHERE name = $2 AND lane = $3 AND start_ms = $4",
        )
        .bind(free_at)
        .bind(name)
        .bind(i64::from(slot.lane))
        .bind(slot.start_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(settled > 0)
    }

    /// Reads the clock rate slots are cut on (see [`Now::Store`]) outside any transaction,
    /// for a gate to learn how far its process's clock is from it. This process's clock is
    /// read right around the query, on a connection already checked out: the pool's
    /// check of an idle connection is a round trip of its own, and would double the
    /// reading's uncertainty.
    pub async fn read_clock(&self) -> Result<ClockReading, StoreError> {
        match self.backend {
            Backend::Sqlite => Ok(ClockReading {
                sent_ms: crate::clock::now_ms(),
                store_ms: crate::clock::host_wall_ms(),
                received_ms: crate::clock::now_ms(),
            }),
            Backend::Postgres => {
                let mut conn = self.pool.acquire().await?;
                let sent_ms = crate::clock::now_ms();
                let store_ms = sqlx::query_scalar(&format!("SELECT {DB_NOW_MS}"))
                    .fetch_one(&mut *conn)
                    .await?;
                Ok(ClockReading {
                    sent_ms,
                    store_ms,
                    received_ms: crate::clock::now_ms(),
                })
            }
        }
    }

    /// The limit's lanes, with the database server's clock read in the same round trip on
    /// PostgreSQL (once the lock is held, as the lock came first).
    async fn read_lanes(
        &self,
        tx: &mut Transaction<'static, Any>,
        name: &str,
        capacity: u32,
    ) -> Result<(Vec<Lane>, Option<i64>), StoreError> {
        let now = match self.backend {
            Backend::Postgres => DB_NOW_MS,
            Backend::Sqlite => "NULL",
        };
        let rows: Vec<(i64, i64, Option<i64>, Option<i64>)> = sqlx::query_as(&format!(
            "SELECT lane, free_at_ms, departs_by_ms, {now} FROM rate_lanes \
             WHERE name = $1 AND lane < $2 ORDER BY lane"
        ))
        .bind(name)
        .bind(i64::from(capacity))
        .fetch_all(&mut **tx)
        .await?;
        let db_now = rows.iter().filter_map(|r| r.3).max();
        let lanes = rows
            .into_iter()
            .map(|(lane, free_at_ms, departs_by_ms, _)| Lane {
                lane: u32::try_from(lane).unwrap_or(u32::MAX),
                free_at_ms,
                departs_by_ms,
            })
            .collect();
        Ok((lanes, db_now))
    }

    /// What time it is on the clock rate slots are cut on: the database server's for
    /// PostgreSQL (`clock_timestamp()`, the time of this statement, not of the
    /// transaction's start), this host's real one for SQLite, which only one host opens.
    async fn read_now(
        &self,
        tx: &mut Transaction<'static, Any>,
        now: Now,
    ) -> Result<i64, StoreError> {
        match (now, self.backend) {
            (Now::At(ms), _) => Ok(ms),
            (Now::Store, Backend::Sqlite) => Ok(crate::clock::host_wall_ms()),
            (Now::Store, Backend::Postgres) => {
                Ok(sqlx::query_scalar(&format!("SELECT {DB_NOW_MS}"))
                    .fetch_one(&mut **tx)
                    .await?)
            }
        }
    }
}

/// The claim on lanes read at `now_ms` (those whose deadline passed already settled): the
/// earliest-free lane's slot, spaced from the latest start; if that lane still waits to
/// hear from its last request, another lane due as well, or else ask again.
fn plan(lanes: &[Lane], now_ms: i64, capacity: u32, window_ms: i64, reach: SlotReach) -> Claim {
    // The latest start of any lane was one window before its lane frees again.
    let last_free = lanes.iter().map(|l| l.free_at_ms).max().unwrap_or(0);
    let spaced = last_free - window_ms + window_ms / i64::from(capacity.max(1));
    let slot_of = |lane: &Lane| {
        let due = lane.free_at_ms.max(spaced);
        if now_ms - due <= reach.behind_ms {
            due
        } else {
            now_ms
        }
    };
    let mut order: Vec<&Lane> = lanes.iter().collect();
    order.sort_by_key(|l| (l.free_at_ms, l.lane));
    let Some(first) = order.first() else {
        return Claim::NotYet(now_ms);
    };
    let slot = slot_of(first);
    if slot - now_ms > reach.ahead_ms {
        return Claim::NotYet(slot);
    }
    let due = |l: &&&Lane| slot_of(l) - now_ms <= reach.ahead_ms;
    match order.iter().filter(due).find(|l| l.departs_by_ms.is_none()) {
        Some(lane) => Claim::Grant {
            lane: lane.lane,
            slot: slot_of(lane),
        },
        None => Claim::Unsettled(
            order
                .iter()
                .filter(due)
                .filter_map(|l| l.departs_by_ms)
                .min()
                .unwrap_or(now_ms),
        ),
    }
}

/// Creates the lanes of a limit that are missing: on first use, or when the capacity grew
/// since the last run.
async fn insert_lanes(
    tx: &mut Transaction<'static, Any>,
    name: &str,
    capacity: u32,
) -> Result<(), StoreError> {
    sqlx::query(
        "WITH RECURSIVE lanes (lane) AS \
           (SELECT 0 UNION ALL SELECT lane + 1 FROM lanes WHERE lane + 1 < $2) \
         INSERT INTO rate_lanes (name, lane, free_at_ms) SELECT $1, lane, 0 FROM lanes WHERE true \
         ON CONFLICT (name, lane) DO NOTHING",
    )
    .bind(name)
    .bind(i64::from(capacity))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REACH: SlotReach = SlotReach {
        ahead_ms: 5,
        behind_ms: 3,
    };

    fn settled(lane: u32, free_at_ms: i64) -> Lane {
        Lane {
            lane,
            free_at_ms,
            departs_by_ms: None,
        }
    }

    fn waiting(lane: u32, free_at_ms: i64, departs_by_ms: i64) -> Lane {
        Lane {
            lane,
            free_at_ms,
            departs_by_ms: Some(departs_by_ms),
        }
    }

    #[test]
    fn the_earliest_free_lane_is_granted_half_a_window_after_the_latest_start() {
        // Lane 0 started at 0, lane 1 at 500: lane 0 is free at 1000, and 1000 is also
        // half a window after 500.
        let lanes = [settled(0, 1000), settled(1, 1500)];
        assert_eq!(
            plan(&lanes, 998, 2, 1000, REACH),
            Claim::Grant {
                lane: 0,
                slot: 1000
            }
        );
        assert_eq!(plan(&lanes, 900, 2, 1000, REACH), Claim::NotYet(1000));
        // Lane 0's request left late, at 100: its next start is cut from then.
        let lanes = [settled(0, 1100), settled(1, 1500)];
        assert_eq!(plan(&lanes, 1000, 2, 1000, REACH), Claim::NotYet(1100));
    }

    #[test]
    fn a_lane_still_waiting_for_its_departure_is_not_granted() {
        // Lane 0 is due by its start, but its request has not said when it left.
        let lanes = [waiting(0, 1000, 3000), settled(1, 1500)];
        assert_eq!(plan(&lanes, 1000, 2, 1000, REACH), Claim::Unsettled(3000));
        // With a settled lane due as well, that one goes.
        let lanes = [waiting(0, 1000, 3000), settled(1, 1000)];
        assert_eq!(
            plan(&lanes, 1000, 2, 1000, REACH),
            Claim::Grant {
                lane: 1,
                slot: 1000
            }
        );
        // Nothing due yet: ask again at the slot, as for settled lanes.
        let lanes = [waiting(0, 1000, 3000), settled(1, 1500)];
        assert_eq!(plan(&lanes, 500, 2, 1000, REACH), Claim::NotYet(1000));
    }

    #[test]
    fn a_slot_missed_by_a_little_is_kept_and_by_more_moves_to_now() {
        // Lane 1 started at 0, lane 0 at 500: lane 1 is due at 1000.
        let lanes = [settled(0, 1500), settled(1, 1000)];
        assert_eq!(
            plan(&lanes, 1003, 2, 1000, REACH),
            Claim::Grant {
                lane: 1,
                slot: 1000
            }
        );
        assert_eq!(
            plan(&lanes, 1004, 2, 1000, REACH),
            Claim::Grant {
                lane: 1,
                slot: 1004
            }
        );
    }
}
