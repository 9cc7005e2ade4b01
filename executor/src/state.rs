//! What must survive a disconnection: updates not yet acknowledged (by uuid, in send order) and
//! tasks for which no update has been acknowledged yet. Both are re-sent only inside the next
//! SUBSCRIBE (`unacknowledged_updates` / `unacknowledged_tasks`).

use croupier_proto::v1::executor::call;
use croupier_proto::v1::{TaskInfo, TaskState};

/// Unacknowledged updates and tasks.
#[derive(Debug, Default)]
pub struct Unacked {
    updates: Vec<(Vec<u8>, call::Update)>,
    tasks: Vec<TaskInfo>,
}

/// The update an ACKNOWLEDGED event settled.
#[derive(Debug, Clone)]
pub struct Settled {
    pub task_id: String,
    pub state: TaskState,
}

impl Unacked {
    /// Remember a task received in LAUNCH / LAUNCH_GROUP.
    pub fn add_task(&mut self, task: TaskInfo) {
        self.tasks.push(task);
    }

    /// Remember a sent update (keyed by its 16-byte uuid).
    pub fn add_update(&mut self, update: call::Update) {
        let uuid = update.status.uuid.clone().unwrap_or_default();
        self.updates.push((uuid, update));
    }

    /// Apply an ACKNOWLEDGED: forget the update with `uuid`, and the task as an unacknowledged
    /// task. `None` if the uuid is unknown (a duplicate ACK).
    pub fn acknowledge(&mut self, uuid: &[u8]) -> Option<Settled> {
        let pos = self
            .updates
            .iter()
            .position(|(u, _)| u.as_slice() == uuid)?;
        let (_, update) = self.updates.remove(pos);
        let task_id = update.status.task_id.value.clone();
        self.tasks.retain(|t| t.task_id.value != task_id);
        Some(Settled {
            task_id,
            state: TaskState::try_from(update.status.state).unwrap_or(TaskState::TaskUnknown),
        })
    }

    /// The `Call.Subscribe` payload.
    pub fn subscribe_payload(&self) -> call::Subscribe {
        call::Subscribe {
            unacknowledged_tasks: self.tasks.clone(),
            unacknowledged_updates: self.updates.iter().map(|(_, u)| u.clone()).collect(),
        }
    }

    /// Number of updates waiting for an ACK.
    pub fn pending_updates(&self) -> usize {
        self.updates.len()
    }

    /// Are updates for `task_id` still waiting for an ACK?
    pub fn has_pending_for(&self, task_id: &str) -> bool {
        self.updates
            .iter()
            .any(|(_, u)| u.status.task_id.value == task_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use croupier_proto::v1::{AgentId, TaskId, TaskStatus};

    fn update(task: &str, uuid: u8, state: TaskState) -> call::Update {
        call::Update {
            status: TaskStatus {
                task_id: TaskId { value: task.into() },
                state: state as i32,
                uuid: Some(vec![uuid; 16]),
                ..Default::default()
            },
        }
    }

    #[test]
    fn ack_removes_update_and_task() {
        let mut u = Unacked::default();
        u.add_task(TaskInfo {
            name: "t".into(),
            task_id: TaskId { value: "t".into() },
            agent_id: AgentId { value: "a".into() },
            ..Default::default()
        });
        u.add_update(update("t", 1, TaskState::TaskStarting));
        u.add_update(update("t", 2, TaskState::TaskRunning));
        let p = u.subscribe_payload();
        assert_eq!(p.unacknowledged_tasks.len(), 1);
        assert_eq!(p.unacknowledged_updates.len(), 2);
        let s = u.acknowledge(&[1; 16]).unwrap();
        assert_eq!(s.state, TaskState::TaskStarting);
        assert!(u.acknowledge(&[1; 16]).is_none());
        let p = u.subscribe_payload();
        assert!(p.unacknowledged_tasks.is_empty());
        assert_eq!(p.unacknowledged_updates[0].status.uuid, Some(vec![2; 16]));
    }
}
