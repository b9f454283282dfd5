//! Node configuration (`pubsub#node_config`) and its data forms.

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};
use xmpp_parsers::minidom::Element;

use super::PubSubConfig;
use super::errors::{Failure, Result};
use super::ns;

/// Who may subscribe to a node and retrieve its items
/// (`pubsub#access_model`); `roster` and `authorize` are not implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessModel {
    /// Anyone (but outcasts).
    Open,
    /// Owners, publishers and members.
    Whitelist,
    /// Those, and the accounts that receive the owner's presence (a
    /// roster subscription to it).
    Presence,
}

/// Who may publish to a node (`pubsub#publish_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishModel {
    /// Anyone (but outcasts).
    Open,
    /// Owners and publishers.
    Publishers,
    /// Owners and subscribers.
    Subscribers,
}

/// When a new subscriber gets the newest item (`pubsub#send_last_published_item`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendLast {
    /// Never (the default: xbus must not see an old event on subscribe).
    Never,
    /// On subscription.
    OnSub,
    /// On subscription (presence-based delivery is not implemented, so the
    /// same as `OnSub`).
    OnSubAndPresence,
}

/// The configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeConfig {
    pub title: String,
    pub persist_items: bool,
    /// Already capped to the service's `max_items_limit`; `max` is stored
    /// as that limit.
    pub max_items: u32,
    pub deliver_notifications: bool,
    pub deliver_payloads: bool,
    pub notify_delete: bool,
    pub notify_retract: bool,
    /// `true`: `type='headline'` notifications (default); `false`: `normal`.
    pub headline: bool,
    pub publish_model: PublishModel,
    pub access_model: AccessModel,
    pub send_last: SendLast,
}

impl NodeConfig {
    /// The configuration of a node created without options.
    pub(crate) fn defaults(limits: &PubSubConfig) -> NodeConfig {
        NodeConfig {
            title: String::new(),
            persist_items: true,
            max_items: limits.default_max_items.min(limits.max_items_limit),
            deliver_notifications: true,
            deliver_payloads: true,
            notify_delete: true,
            notify_retract: false,
            headline: true,
            publish_model: PublishModel::Open,
            access_model: AccessModel::Open,
            send_last: SendLast::Never,
        }
    }

    /// Whether the node restricts who may publish or subscribe: its
    /// owner requests are then its owners' alone, whatever the
    /// [`Ownership`](super::Ownership).
    pub(crate) fn restricted(&self) -> bool {
        self.publish_model != PublishModel::Open || self.access_model != AccessModel::Open
    }

    /// How many items the node keeps.
    pub(crate) fn kept_items(&self) -> usize {
        if self.persist_items {
            self.max_items as usize
        } else {
            0
        }
    }

    /// Applies a submitted form, all or nothing. `form_type` is the
    /// FORM_TYPE the form must have if it names one.
    pub(crate) fn apply_form(
        &mut self,
        form: &DataForm,
        form_type: &str,
        limits: &PubSubConfig,
    ) -> Result<()> {
        check_form_type(form, form_type)?;
        let mut next = self.clone();
        for field in fields(form) {
            next.apply_field(field, limits)?;
        }
        *self = next;
        Ok(())
    }

    /// Checks publish-options against the node (XEP-0060 §7.1.5): every
    /// known field must match the node's value.
    pub(crate) fn check_preconditions(&self, form: &DataForm, limits: &PubSubConfig) -> Result<()> {
        check_form_type(form, ns::PUBLISH_OPTIONS)?;
        for field in fields(form) {
            let mut candidate = self.clone();
            candidate.apply_field(field, limits)?;
            if candidate != *self {
                return Err(Failure::precondition_not_met(
                    field.var.as_deref().unwrap_or(""),
                ));
            }
        }
        Ok(())
    }

    fn apply_field(&mut self, field: &Field, limits: &PubSubConfig) -> Result<()> {
        let Some(var) = field.var.as_deref() else {
            return Ok(());
        };
        let Some(value) = field.values.first().map(|v| v.trim()) else {
            return Ok(()); // No value: keep the current one.
        };
        match var {
            "pubsub#title" => self.title = value.chars().take(1024).collect(),
            "pubsub#persist_items" => self.persist_items = boolean(var, value)?,
            "pubsub#deliver_notifications" => self.deliver_notifications = boolean(var, value)?,
            "pubsub#deliver_payloads" => self.deliver_payloads = boolean(var, value)?,
            "pubsub#notify_delete" => self.notify_delete = boolean(var, value)?,
            "pubsub#notify_retract" => self.notify_retract = boolean(var, value)?,
            "pubsub#max_items" => {
                self.max_items = if value == "max" {
                    limits.max_items_limit
                } else {
                    let n: u32 = value.parse().map_err(|_| {
                        Failure::not_acceptable(format!("{var}: not a number or 'max': {value:?}"))
                    })?;
                    if n > limits.max_items_limit {
                        return Err(Failure::not_acceptable(format!(
                            "{var}: {n} is above the service's limit of {}",
                            limits.max_items_limit
                        )));
                    }
                    n
                }
            }
            "pubsub#notification_type" => {
                self.headline = match value {
                    "headline" => true,
                    "normal" => false,
                    _ => return Err(bad_value(var, value)),
                }
            }
            "pubsub#access_model" => {
                self.access_model = match value {
                    "open" => AccessModel::Open,
                    "whitelist" => AccessModel::Whitelist,
                    "authorize" => return Err(Failure::unsupported("access-authorize")),
                    "presence" => AccessModel::Presence,
                    "roster" => return Err(Failure::unsupported("access-roster")),
                    _ => return Err(bad_value(var, value)),
                }
            }
            "pubsub#publish_model" => {
                self.publish_model = match value {
                    "open" => PublishModel::Open,
                    "publishers" => PublishModel::Publishers,
                    "subscribers" => PublishModel::Subscribers,
                    _ => return Err(bad_value(var, value)),
                }
            }
            "pubsub#send_last_published_item" => {
                self.send_last = match value {
                    "never" => SendLast::Never,
                    "on_sub" => SendLast::OnSub,
                    "on_sub_and_presence" => SendLast::OnSubAndPresence,
                    _ => return Err(bad_value(var, value)),
                }
            }
            "pubsub#node_type" if value != "leaf" => {
                return Err(Failure::unsupported("collections"));
            }
            // Other options (pubsub#type, pubsub#presence_based_delivery,
            // pubsub#itemreply, ...) are accepted and ignored.
            _ => {}
        }
        Ok(())
    }

    /// The configuration as a `pubsub#node_config` form of `type_`.
    pub(crate) fn to_form(&self, type_: DataFormType) -> DataForm {
        DataForm::new(type_, ns::NODE_CONFIG, self.fields())
    }

    /// The node's metadata (XEP-0060 §5.4) for disco#info.
    pub(crate) fn meta_data(&self, owner: &str) -> DataForm {
        let mut fields = self.fields();
        fields.push(Field::new("pubsub#owner", FieldType::JidMulti).with_value(owner));
        DataForm::new(DataFormType::Result_, ns::META_DATA, fields)
    }

    fn fields(&self) -> Vec<Field> {
        let flag = |var: &str, on: bool| {
            Field::new(var, FieldType::Boolean).with_value(if on { "1" } else { "0" })
        };
        vec![
            Field::new("pubsub#title", FieldType::TextSingle).with_value(&self.title),
            flag("pubsub#deliver_notifications", self.deliver_notifications),
            flag("pubsub#deliver_payloads", self.deliver_payloads),
            flag("pubsub#notify_delete", self.notify_delete),
            flag("pubsub#notify_retract", self.notify_retract),
            flag("pubsub#persist_items", self.persist_items),
            Field::new("pubsub#max_items", FieldType::TextSingle)
                .with_value(&self.max_items.to_string()),
            list(
                "pubsub#access_model",
                &["open", "whitelist", "presence"],
                match self.access_model {
                    AccessModel::Open => "open",
                    AccessModel::Whitelist => "whitelist",
                    AccessModel::Presence => "presence",
                },
            ),
            list(
                "pubsub#publish_model",
                &["open", "publishers", "subscribers"],
                match self.publish_model {
                    PublishModel::Open => "open",
                    PublishModel::Publishers => "publishers",
                    PublishModel::Subscribers => "subscribers",
                },
            ),
            list(
                "pubsub#notification_type",
                &["headline", "normal"],
                if self.headline { "headline" } else { "normal" },
            ),
            list(
                "pubsub#send_last_published_item",
                &["never", "on_sub", "on_sub_and_presence"],
                match self.send_last {
                    SendLast::Never => "never",
                    SendLast::OnSub => "on_sub",
                    SendLast::OnSubAndPresence => "on_sub_and_presence",
                },
            ),
        ]
    }
}

fn list(var: &str, options: &[&str], value: &str) -> Field {
    let mut field = Field::new(var, FieldType::ListSingle).with_value(value);
    field.options = options
        .iter()
        .map(|o| Option_ {
            label: None,
            value: (*o).to_owned(),
        })
        .collect();
    field
}

fn boolean(var: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(bad_value(var, value)),
    }
}

fn bad_value(var: &str, value: &str) -> Failure {
    Failure::not_acceptable(format!("{var}: unsupported value {value:?}"))
}

/// The fields of a form other than FORM_TYPE.
fn fields(form: &DataForm) -> impl Iterator<Item = &Field> {
    form.fields
        .iter()
        .filter(|f| f.var.as_deref() != Some("FORM_TYPE"))
}

fn check_form_type(form: &DataForm, expected: &str) -> Result<()> {
    match form.form_type() {
        Some(found) if found != expected => Err(Failure::not_acceptable(format!(
            "FORM_TYPE {found:?}, expected {expected:?}"
        ))),
        _ => Ok(()),
    }
}

/// Parses the `jabber:x:data` child of `parent` (e.g. `<configure/>`), if any.
pub(crate) fn form_child(parent: &Element) -> Result<Option<DataForm>> {
    let Some(x) = parent.get_child("x", ns::DATA_FORMS) else {
        return Ok(None);
    };
    DataForm::try_from(x.clone())
        .map(Some)
        .map_err(|e| Failure::bad_request(format!("malformed data form: {e}")))
}

/// A form that submits values (`submit`), or `None` for `cancel`.
pub(crate) fn submitted(form: DataForm) -> Result<Option<DataForm>> {
    match form.type_ {
        DataFormType::Submit => Ok(Some(form)),
        DataFormType::Cancel => Ok(None),
        _ => Err(Failure::bad_request("the data form must be of type submit")),
    }
}
