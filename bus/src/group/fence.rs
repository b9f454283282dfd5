//! Who leads a group, and which leader an instance takes jobs from.
//!
//! The members of a group are the instances of one service (one account)
//! that consume the group, as their presence announces. The leader stays
//! the leader while it is live; when it is not, the live one with the
//! lowest full JID takes over. Views of who is alive can differ for a
//! moment (a presence on its way, a ping not yet answered), so two
//! instances may both believe they lead. Each leader therefore claims an
//! **epoch**, above any it has seen and above the one in the group's
//! state, announces it to the other members before it reads that state,
//! and puts it on every job; an instance takes jobs only from the newest
//! claim it has seen (epoch first; at equal epochs the lower leader JID)
//! and refuses older ones with `stale-epoch`. A leader refused that way,
//! or told of a newer claim, stops leading at once (saving its progress
//! before it answers the claim). So at most one leader's jobs are taken
//! at a time by any instance; an event can be handled twice only if it
//! was out with an instance when its leader changed, which the group
//! counts as a redelivery.

use std::cmp::Ordering;

/// A leader's claim, as carried by its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub epoch: u64,
    /// The leader's full JID.
    pub leader: String,
}

impl Ord for Claim {
    fn cmp(&self, other: &Self) -> Ordering {
        // At equal epochs the lower JID wins, as the election picks it.
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| other.leader.cmp(&self.leader))
    }
}

impl PartialOrd for Claim {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The newest claim an instance has seen for one group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    newest: Option<Claim>,
}

impl Fence {
    /// Whether a job under `claim` is taken. A newer claim than any seen
    /// becomes the one to follow; an older one is refused with the epoch
    /// followed (for the `stale-epoch` answer).
    pub fn admit(&mut self, claim: &Claim) -> Result<(), u64> {
        match &self.newest {
            Some(newest) if claim < newest => Err(newest.epoch),
            Some(newest) if claim == newest => Ok(()),
            _ => {
                self.newest = Some(claim.clone());
                Ok(())
            }
        }
    }

    /// The claim followed, if any.
    #[cfg(test)]
    pub fn newest(&self) -> Option<&Claim> {
        self.newest.as_ref()
    }

    /// The epoch of the claim followed (0 if none).
    pub fn epoch(&self) -> u64 {
        self.newest.as_ref().map_or(0, |c| c.epoch)
    }

    /// The leader of the claim followed, if any.
    pub fn leader(&self) -> Option<&str> {
        self.newest.as_ref().map(|c| c.leader.as_str())
    }
}

/// The member that should lead: the leader followed while it is live (a
/// group does not change leaders while its leader is fine), else the
/// lowest full JID among the live members (`None` if there are none).
pub(crate) fn elect<'a>(
    followed: Option<&'a str>,
    live: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut lowest = None;
    for member in live {
        if Some(member) == followed {
            return followed;
        }
        if lowest.is_none_or(|l| member < l) {
            lowest = Some(member);
        }
    }
    lowest
}

/// What a member does about leading, given who should lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leadership {
    /// Another member leads (or nobody yet).
    Follow,
    /// This member should lead and must claim epoch `epoch`: read the
    /// group's state, then lead at one above the epoch found there.
    Claim,
    /// This member leads at `epoch`.
    Lead { epoch: u64 },
}

impl Leadership {
    /// After the members changed: `me` is this member, `elected` the one
    /// that should lead.
    pub fn members_changed(&self, me: &str, elected: Option<&str>) -> Leadership {
        match (self, elected == Some(me)) {
            (Leadership::Lead { epoch }, true) => Leadership::Lead { epoch: *epoch },
            (Leadership::Claim, true) => Leadership::Claim,
            (Leadership::Follow, true) => Leadership::Claim,
            (_, false) => Leadership::Follow,
        }
    }

    /// The group's state was read while claiming at `claimed`: lead at
    /// that epoch, or one above the stored one if that is higher.
    pub fn state_read(&self, stored_epoch: u64, claimed: u64) -> Leadership {
        match self {
            Leadership::Claim => Leadership::Lead {
                epoch: stored_epoch.saturating_add(1).max(claimed),
            },
            other => other.clone(),
        }
    }

    /// An instance refused a job: it follows a claim of epoch `followed`.
    /// A leader at or below that epoch steps down.
    pub fn refused(&self, followed: u64) -> Leadership {
        match self {
            Leadership::Lead { epoch } if *epoch <= followed => Leadership::Follow,
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(epoch: u64, leader: &str) -> Claim {
        Claim {
            epoch,
            leader: leader.to_owned(),
        }
    }

    #[test]
    fn an_instance_follows_the_newest_claim_only() {
        let mut fence = Fence::default();
        assert_eq!(fence.admit(&claim(3, "s@x/b")), Ok(()));
        assert_eq!(
            fence.admit(&claim(3, "s@x/b")),
            Ok(()),
            "the same leader again"
        );
        assert_eq!(fence.admit(&claim(2, "s@x/a")), Err(3), "an older epoch");
        assert_eq!(
            fence.admit(&claim(3, "s@x/c")),
            Err(3),
            "same epoch, higher JID"
        );
        assert_eq!(
            fence.admit(&claim(3, "s@x/a")),
            Ok(()),
            "same epoch, lower JID"
        );
        assert_eq!(fence.admit(&claim(3, "s@x/b")), Err(3), "b was overtaken");
        assert_eq!(fence.admit(&claim(4, "s@x/a")), Ok(()));
        assert_eq!(fence.newest(), Some(&claim(4, "s@x/a")));
    }

    #[test]
    fn the_lowest_live_member_is_elected() {
        assert_eq!(elect(None, ["s@x/i2", "s@x/i1", "s@x/i3"]), Some("s@x/i1"));
        assert_eq!(elect(None, Vec::<&str>::new()), None);
    }

    #[test]
    fn the_followed_leader_stays_elected_while_live() {
        let live = ["s@x/b", "s@x/a", "s@x/c"];
        assert_eq!(elect(None, live), Some("s@x/a"));
        assert_eq!(elect(Some("s@x/c"), live), Some("s@x/c"));
        assert_eq!(elect(Some("s@x/d"), live), Some("s@x/a"), "dead");
        assert_eq!(elect(None, []), None);
    }

    #[test]
    fn a_member_claims_leads_and_steps_down() {
        let me = "s@x/i1";
        let l = Leadership::Follow.members_changed(me, Some("s@x/i0"));
        assert_eq!(l, Leadership::Follow);
        let l = l.members_changed(me, Some(me));
        assert_eq!(l, Leadership::Claim);
        assert_eq!(l.state_read(6, 3), Leadership::Lead { epoch: 7 });
        let l = l.state_read(6, 7);
        assert_eq!(l, Leadership::Lead { epoch: 7 });
        assert_eq!(
            Leadership::Claim.state_read(2, 9),
            Leadership::Lead { epoch: 9 },
            "the epoch announced in the claim"
        );
        assert_eq!(
            l.refused(6),
            Leadership::Lead { epoch: 7 },
            "older refusals"
        );
        assert_eq!(
            l.members_changed(me, Some(me)),
            Leadership::Lead { epoch: 7 }
        );
        assert_eq!(
            l.refused(7),
            Leadership::Follow,
            "a rival with the same epoch won"
        );
        assert_eq!(
            Leadership::Lead { epoch: 7 }.members_changed(me, Some("s@x/i0")),
            Leadership::Follow,
            "a lower member came back"
        );
    }
}
