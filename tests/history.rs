//! What a workflow history costs: events, and billable actions as Temporal Cloud counts them
//! (docs.temporal.io/cloud/actions), for the e2e cost tests and the benchmark.
//!
//! Per history, one action for each of: the run's start (`WorkflowExecutionStarted`, which
//! also covers continue-as-new and, seen from the child's own history, the child's half of a
//! child workflow start), a child workflow start command (the parent's half), an activity
//! scheduled, each activity retry (an attempt past the first), a timer, a signal received or
//! sent, a search attribute upsert, an accepted update; and one for all the markers (local
//! activities, side effects, versions) recorded by one workflow task completion. Not visible in
//! a history, so not counted: queries, heartbeats that reach the server, and workflow task
//! heartbeats of a local activity running past the task timeout.

use std::collections::HashSet;

use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

/// The billable actions one history (one run) records.
pub fn billable_actions(events: &[HistoryEvent]) -> u64 {
    let mut actions = 0;
    let mut marker_tasks = HashSet::new();
    for event in events {
        actions += match event.event_type() {
            EventType::WorkflowExecutionStarted
            | EventType::StartChildWorkflowExecutionInitiated
            | EventType::ActivityTaskScheduled
            | EventType::TimerStarted
            | EventType::WorkflowExecutionSignaled
            | EventType::SignalExternalWorkflowExecutionInitiated
            | EventType::UpsertWorkflowSearchAttributes
            | EventType::WorkflowExecutionUpdateAccepted => 1,
            EventType::ActivityTaskStarted => match &event.attributes {
                Some(Attributes::ActivityTaskStartedEventAttributes(started)) => {
                    u64::try_from(started.attempt.saturating_sub(1)).unwrap_or_default()
                }
                _ => 0,
            },
            EventType::MarkerRecorded => match &event.attributes {
                Some(Attributes::MarkerRecordedEventAttributes(marker)) => {
                    u64::from(marker_tasks.insert(marker.workflow_task_completed_event_id))
                }
                _ => 0,
            },
            _ => 0,
        };
    }
    actions
}

#[cfg(test)]
mod tests {
    use temporalio_common::protos::temporal::api::history::v1::{
        ActivityTaskStartedEventAttributes, MarkerRecordedEventAttributes,
    };

    use super::*;

    fn event(kind: EventType, attributes: Option<Attributes>) -> HistoryEvent {
        HistoryEvent {
            event_type: kind as i32,
            attributes,
            ..HistoryEvent::default()
        }
    }

    fn marker(task: i64) -> HistoryEvent {
        event(
            EventType::MarkerRecorded,
            Some(Attributes::MarkerRecordedEventAttributes(
                MarkerRecordedEventAttributes {
                    workflow_task_completed_event_id: task,
                    ..Default::default()
                },
            )),
        )
    }

    #[test]
    fn a_start_and_one_local_activity_are_two_actions() {
        let history = [
            event(EventType::WorkflowExecutionStarted, None),
            event(EventType::WorkflowTaskScheduled, None),
            event(EventType::WorkflowTaskStarted, None),
            event(EventType::WorkflowTaskCompleted, None),
            marker(4),
            event(EventType::WorkflowExecutionCompleted, None),
        ];
        assert_eq!(billable_actions(&history), 2);
    }

    #[test]
    fn markers_of_one_task_count_once_and_retries_count_each() {
        let retried = event(
            EventType::ActivityTaskStarted,
            Some(Attributes::ActivityTaskStartedEventAttributes(
                ActivityTaskStartedEventAttributes {
                    attempt: 3,
                    ..Default::default()
                },
            )),
        );
        let history = [
            event(EventType::WorkflowExecutionStarted, None),
            marker(4),
            marker(4),
            marker(9),
            event(EventType::ActivityTaskScheduled, None),
            retried,
            event(EventType::TimerStarted, None),
            event(EventType::WorkflowExecutionSignaled, None),
            event(EventType::StartChildWorkflowExecutionInitiated, None),
            event(EventType::UpsertWorkflowSearchAttributes, None),
        ];
        // start 1, markers 2 (tasks 4 and 9), activity 1 + 2 retries, timer, signal, child
        // start command, upsert.
        assert_eq!(billable_actions(&history), 10);
    }
}
