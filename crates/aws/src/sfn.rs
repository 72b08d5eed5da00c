//! [`Workflow`]: Step Functions StartExecution (named after the CloudFormation RequestId, so a
//! redelivered request starts nothing) and the history check of the safety net.

use aws_sdk_sfn::types::HistoryEventType;
use opsflow_core::ports::Workflow;
use opsflow_core::CoreError;
use serde_json::Value;

use crate::error::from_sdk_error;

/// The states whose successful exit means CloudFormation was answered.
pub const ANSWER_STATES: [&str; 2] = ["AnswerSuccess", "AnswerFailed"];

#[derive(Clone, Debug)]
pub struct SfnWorkflow {
    client: aws_sdk_sfn::Client,
    state_machine_arn: String,
}

impl SfnWorkflow {
    pub fn new(client: aws_sdk_sfn::Client, state_machine_arn: impl Into<String>) -> Self {
        SfnWorkflow {
            client,
            state_machine_arn: state_machine_arn.into(),
        }
    }
}

impl SfnWorkflow {
    /// The ARN of the execution named `name` of this state machine.
    pub fn execution_arn(&self, name: &str) -> String {
        format!("{}:{name}", self.state_machine_arn.replacen(":stateMachine:", ":execution:", 1))
    }
}

impl Workflow for SfnWorkflow {
    async fn stop_execution(&self, name: &str, cause: &str) -> Result<bool, CoreError> {
        let arn = self.execution_arn(name);
        let described = match self.client.describe_execution().execution_arn(&arn).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_execution_does_not_exist()) => return Ok(false),
            Err(e) => return Err(from_sdk_error("DescribeExecution", &e)),
        };
        if described.status() != &aws_sdk_sfn::types::ExecutionStatus::Running {
            return Ok(false);
        }
        self.client
            .stop_execution()
            .execution_arn(&arn)
            .error("opsflow.Superseded")
            .cause(cause)
            .send()
            .await
            .map_err(|e| from_sdk_error("StopExecution", &e))?;
        tracing::warn!(execution = %arn, cause, "execution stopped");
        Ok(true)
    }

    async fn start_execution(&self, name: &str, input: &Value) -> Result<(), CoreError> {
        const OP: &str = "StartExecution";
        let result = self
            .client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Standard workflows: the same name and input again is idempotent and answers OK;
            // ExecutionAlreadyExists means the name was used with another input — still the
            // same CloudFormation request, already being handled.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_execution_already_exists()) => Ok(()),
            Err(e) => Err(from_sdk_error(OP, &e)),
        }
    }

    async fn answered(&self, execution_arn: &str) -> Result<bool, CoreError> {
        const OP: &str = "GetExecutionHistory";
        let mut pages = self
            .client
            .get_execution_history()
            .execution_arn(execution_arn)
            .reverse_order(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk_error(OP, &e))?;
            let answered = page.events().iter().any(|e| {
                e.r#type() == &HistoryEventType::TaskStateExited
                    && e.state_exited_event_details().is_some_and(|d| ANSWER_STATES.contains(&d.name()))
            });
            if answered {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
