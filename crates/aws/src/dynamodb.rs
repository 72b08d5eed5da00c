//! [`SetupStore`]: opsflow's own state in a DynamoDB table (partition key `pk`, a string; the
//! document in `doc`; `expiresAt` for the table's TTL). Every read is strongly consistent and
//! `put_new` is a conditional write, so two writers never both claim a key.

use aws_sdk_dynamodb::types::AttributeValue;
use opsflow_core::ports::SetupStore;
use opsflow_core::CoreError;

use crate::error::from_sdk_error;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    fn item(key: &str, doc: &str, expires_at_s: Option<i64>) -> std::collections::HashMap<String, AttributeValue> {
        let mut item = std::collections::HashMap::from([
            ("pk".to_string(), AttributeValue::S(key.to_string())),
            ("doc".to_string(), AttributeValue::S(doc.to_string())),
        ]);
        if let Some(at) = expires_at_s {
            item.insert("expiresAt".to_string(), AttributeValue::N(at.to_string()));
        }
        item
    }

    /// CreateTable with the template's key schema, unless it exists (for the local cloud and
    /// tests; on AWS the template creates it).
    pub async fn create_table(&self) -> Result<(), CoreError> {
        create_table(&self.client, &self.table, "pk", None).await
    }
}

impl SetupStore for DynamoStore {
    async fn get(&self, key: &str) -> Result<Option<String>, CoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk_error("GetItem", &e))?;
        Ok(out.item().and_then(|item| item.get("doc")).and_then(|doc| doc.as_s().ok()).cloned())
    }

    async fn put_new(&self, key: &str, doc: &str, expires_at_s: Option<i64>) -> Result<bool, CoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(key, doc, expires_at_s)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(from_sdk_error("PutItem", &e)),
        }
    }

    async fn put(&self, key: &str, doc: &str, expires_at_s: Option<i64>) -> Result<(), CoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(key, doc, expires_at_s)))
            .send()
            .await
            .map_err(|e| from_sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .send()
            .await
            .map_err(|e| from_sdk_error("DeleteItem", &e))?;
        Ok(())
    }
}

/// CreateTable with string keys (a partition key, and a sort key if given), on demand, unless a
/// table of that name exists already (a second pipeline on the same local cloud).
pub(crate) async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    partition: &str,
    sort: Option<&str>,
) -> Result<(), CoreError> {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    let build = |e: aws_sdk_dynamodb::error::BuildError| CoreError::invalid("CreateTable", e.to_string());
    let mut request = client.create_table().table_name(table).billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in [(partition, KeyType::Hash)].into_iter().chain(sort.map(|s| (s, KeyType::Range))) {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .map_err(build)?,
            );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => Ok(()),
        Err(e) => Err(from_sdk_error("CreateTable", &e)),
    }
}
