//! The closed vocabularies of the domain. Each is stored as lower-case text (upper-case for document
//! types, as they are written in Colombia) and travels as the same string in JSON.

use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[doc = $doc:literal])* $name:ident, $sqlx_rename:literal, $serde_rename:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
        #[sqlx(type_name = "text", rename_all = $sqlx_rename)]
        #[serde(rename_all = $serde_rename)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        // Written by hand: the derive cannot see the `rename_all` through this macro, and the
        // document must list the strings that travel, the same ones `as_str` gives.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let docs: &[&str] = &[$($doc),*];
                let description = docs.iter().map(|d| d.trim()).collect::<Vec<_>>().join(" ");
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .enum_values(Some([$($text),+]))
                    .description((!description.is_empty()).then_some(description))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(crate::Error::invalid(
                        concat!("invalid_", stringify!($name)),
                        format!("unknown value {s:?}; expected one of: {}", [$($text),+].join(", ")),
                    )),
                }
            }
        }
    };
}

text_enum!(
    /// What kind of user someone is; it decides every permission.
    Role, "snake_case", "snake_case" {
        Customer => "customer",
        Technician => "technician",
        Collaborator => "collaborator",
        ProcessLeader => "process_leader",
        QualityDirector => "quality_director",
        Admin => "admin",
    }
);

impl Role {
    /// Staff read the case queue; customers and technicians do not.
    pub fn is_staff(self) -> bool {
        matches!(
            self,
            Role::Collaborator | Role::ProcessLeader | Role::QualityDirector | Role::Admin
        )
    }
}

text_enum!(
    /// PQRS(D) types, the two kinds of petition Ley 1755 gives other terms, and the two habeas-data
    /// requests of Ley 1581 (a consultation and a claim about one's personal data).
    CaseType, "snake_case", "snake_case" {
        Peticion => "peticion",
        Queja => "queja",
        Reclamo => "reclamo",
        Sugerencia => "sugerencia",
        Denuncia => "denuncia",
        SolicitudInformacion => "solicitud_informacion",
        Consulta => "consulta",
        // Ley 1581 de 2012 art. 14: someone asks what personal data the company holds of them.
        DatosConsulta => "datos_consulta",
        // Ley 1581 de 2012 art. 15: someone asks to correct, update or delete their data, or
        // withdraws their consent.
        DatosReclamo => "datos_reclamo",
    }
);

text_enum!(
    /// Where a case was filed; answers go back the same way.
    Channel, "snake_case", "snake_case" {
        App => "app",
        Telegram => "telegram",
        Whatsapp => "whatsapp",
        Web => "web",
        Phone => "phone",
        Email => "email",
        // Taken by staff at the front desk.
        InPerson => "in_person",
        // A letter staff registered.
        Letter => "letter",
    }
);

text_enum!(
    CaseStatus, "snake_case", "snake_case" {
        Received => "received",
        Assigned => "assigned",
        InApproval => "in_approval",
        Approved => "approved",
        Answered => "answered",
        Rated => "rated",
        WaitingCustomer => "waiting_customer",
        // Closed because the customer did not answer a request for information within a month
        // (desistimiento tácito, Ley 1755 de 2015 art. 17).
        Withdrawn => "withdrawn",
    }
);

text_enum!(
    /// Impact or urgency, the two axes of the priority matrix.
    Level, "snake_case", "snake_case" {
        High => "high",
        Medium => "medium",
        Low => "low",
    }
);

text_enum!(
    /// How soon a push service should deliver a message to a sleeping device (RFC 8030 §5.3).
    PushUrgency, "kebab-case", "kebab-case" {
        VeryLow => "very-low",
        Low => "low",
        Normal => "normal",
        High => "high",
    }
);

text_enum!(
    Priority, "snake_case", "snake_case" {
        Critical => "critical",
        High => "high",
        Medium => "medium",
        Low => "low",
    }
);

text_enum!(
    DocumentType, "UPPERCASE", "UPPERCASE" {
        Cc => "CC",
        Nit => "NIT",
        Ce => "CE",
        Pa => "PA",
    }
);

text_enum!(
    CustomerKind, "snake_case", "snake_case" {
        Person => "person",
        Company => "company",
    }
);

text_enum!(
    /// What came of a quote (PRO-008 §5.1.3).
    QuoteOutcome, "snake_case", "snake_case" {
        Accepted => "accepted",
        Rejected => "rejected",
        Expired => "expired",
    }
);

text_enum!(
    /// How often a contract's visits are.
    VisitFrequency, "snake_case", "snake_case" {
        Weekly => "weekly",
        Biweekly => "biweekly",
        Monthly => "monthly",
        Bimonthly => "bimonthly",
        Quarterly => "quarterly",
        Semiannual => "semiannual",
        Annual => "annual",
        OnDemand => "on_demand",
    }
);

text_enum!(
    /// A contract is active until its renewal is decided (PRO-008 §5.5).
    ContractStatus, "snake_case", "snake_case" {
        Active => "active",
        Renewed => "renewed",
        NotRenewed => "not_renewed",
    }
);

impl DocumentType {
    /// A NIT identifies a company; the other documents identify a person.
    pub fn customer_kind(self) -> CustomerKind {
        match self {
            DocumentType::Nit => CustomerKind::Company,
            _ => CustomerKind::Person,
        }
    }
}

impl Priority {
    /// The impact × urgency matrix (SGC-SAC-001 §4.1).
    pub fn from_matrix(impact: Level, urgency: Level) -> Priority {
        use Level::*;
        match (impact, urgency) {
            (High, High) => Priority::Critical,
            (High, Medium) | (Medium, High) => Priority::High,
            (High, Low) | (Low, High) | (Medium, Medium) => Priority::Medium,
            (Medium, Low) | (Low, Medium) | (Low, Low) => Priority::Low,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_is_symmetric_and_monotonic() {
        for &i in Level::ALL {
            for &u in Level::ALL {
                assert_eq!(Priority::from_matrix(i, u), Priority::from_matrix(u, i));
            }
        }
        assert_eq!(
            Priority::from_matrix(Level::High, Level::High),
            Priority::Critical
        );
        assert_eq!(Priority::from_matrix(Level::Low, Level::Low), Priority::Low);
    }

    #[test]
    fn text_round_trips() {
        for &t in CaseType::ALL {
            assert_eq!(t.as_str().parse::<CaseType>().ok(), Some(t));
        }
        assert_eq!("NIT".parse::<DocumentType>().ok(), Some(DocumentType::Nit));
        assert!("nit".parse::<DocumentType>().is_err());
    }
}
