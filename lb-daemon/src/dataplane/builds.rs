//! Maglev tables built by worker threads, one per core, while the caller
//! writes the finished ones into the maps, in the order it asked for
//! them. A reload that changes a thousand virtual servers keeps every
//! core building; the caller holds a few tables at a time, and their
//! buffers go round instead of being allocated for each table.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError, mpsc},
    thread::Scope,
};

use crate::maglev::{Builder, Member};

/// Tables asked for and not yet handed back, per worker: enough that a
/// worker that finished a table rarely waits while the caller waits for
/// an earlier one (with 2, the workers of a 1,000-table reload idled
/// about 10% of the time; with 4, 2-4%).
const QUEUE_PER_WORKER: usize = 4;

/// A table asked for: `work` names the members, `table` is the buffer
/// it is built into.
struct Job<T> {
    index: usize,
    work: T,
    table: Vec<u32>,
}

/// Builds in progress; the workers stop when this is dropped.
pub struct Builds<T> {
    jobs: mpsc::Sender<Job<T>>,
    done: mpsc::Receiver<Job<T>>,
    capacity: usize,
    /// Jobs submitted, and handed back (in order).
    submitted: usize,
    handed_back: usize,
    /// Built out of order, waiting for their turn.
    finished: BTreeMap<usize, Job<T>>,
    spare_tables: Vec<Vec<u32>>,
}

impl<T: AsRef<[Member]> + Send> Builds<T> {
    /// Starts `workers` threads in `scope` building tables of `size` slots.
    pub fn start<'scope>(scope: &'scope Scope<'scope, '_>, workers: usize, size: u32) -> Self
    where
        T: 'scope,
    {
        let (jobs, queue) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..workers {
            let (queue, done) = (queue.clone(), done_tx.clone());
            scope.spawn(move || work(&queue, &done, size));
        }
        Self {
            jobs,
            done,
            capacity: workers * QUEUE_PER_WORKER,
            submitted: 0,
            handed_back: 0,
            finished: BTreeMap::new(),
            spare_tables: Vec::new(),
        }
    }

    /// Whether another job may be submitted (the queue is bounded, so
    /// that only a few tables exist at once).
    pub fn has_room(&self) -> bool {
        self.submitted - self.handed_back < self.capacity
    }

    /// Asks for the table of `work`.
    pub fn submit(&mut self, work: T) {
        let job = Job {
            index: self.submitted,
            work,
            table: self.spare_tables.pop().unwrap_or_default(),
        };
        // The workers hold the receiving end until `self` is dropped.
        let _ = self.jobs.send(job);
        self.submitted += 1;
    }

    /// The next job in the order of submission with its table, once
    /// built; `None` when every job has been handed back. Give the table
    /// back with [`Self::recycle`].
    pub fn next(&mut self) -> Option<(T, Vec<u32>)> {
        if self.handed_back == self.submitted {
            return None;
        }
        loop {
            if let Some(job) = self.finished.remove(&self.handed_back) {
                self.handed_back += 1;
                return Some((job.work, job.table));
            }
            // Workers stop only when `self` is dropped, or by panicking
            // (which the scope passes on to its caller).
            let job = self.done.recv().expect("a Maglev worker panicked");
            self.finished.insert(job.index, job);
        }
    }

    /// A table buffer to build a later table into.
    pub fn recycle(&mut self, table: Vec<u32>) {
        self.spare_tables.push(table);
    }
}

/// A worker: builds the tables of the jobs it takes from `queue`.
fn work<T: AsRef<[Member]>>(
    queue: &Mutex<mpsc::Receiver<Job<T>>>,
    done: &mpsc::Sender<Job<T>>,
    size: u32,
) {
    let mut builder = Builder::default();
    loop {
        // The lock is held only while waiting for a job, not while building.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(mut job) = job else {
            return; // no more jobs
        };
        builder.build_into(job.work.as_ref(), size, &mut job.table);
        if done.send(job).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maglev;

    fn members(n: u32) -> Vec<Member> {
        (1..=n)
            .map(|id| Member {
                id,
                key: u64::from(id) * 0x9e37_79b9,
                weight: 100,
            })
            .collect()
    }

    #[test]
    fn tables_come_back_in_order_and_equal_single_builds() {
        let sets: Vec<Vec<Member>> = (1..=40).map(|n| members(n % 7 + 1)).collect();
        let mut seen = Vec::new();
        std::thread::scope(|scope| {
            let mut builds = Builds::start(scope, 3, 1009);
            let mut pending = sets.iter().cloned();
            loop {
                while builds.has_room() {
                    let Some(set) = pending.next() else { break };
                    builds.submit(set);
                }
                let Some((set, table)) = builds.next() else {
                    break;
                };
                assert_eq!(table, maglev::build(&set, 1009));
                seen.push(set);
                builds.recycle(table);
            }
        });
        assert_eq!(seen, sets);
    }
}
