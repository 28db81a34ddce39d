//! A small demo organisation, loaded once, so a first run has something to look at: the three
//! processes of the quality system, one user of each role, a customer and cases in several states.

use atiende_core::auth::{self, Hashing, Password, Registration};
use atiende_core::cases::{self, Assignment, Closing, NewCase};
use atiende_core::types::{CaseType, Channel, DocumentType, Level, Role};
use sqlx::PgPool;
use uuid::Uuid;

use crate::admin::{self, UserAdd};

pub struct DemoLogin {
    pub email: &'static str,
    pub role: Role,
    pub what: &'static str,
}

pub const LOGINS: &[DemoLogin] = &[
    DemoLogin {
        email: "direccion.sig@demo.atiende.co",
        role: Role::QualityDirector,
        what: "assigns and closes cases, reads indicators",
    },
    DemoLogin {
        email: "lider.operativo@demo.atiende.co",
        role: Role::ProcessLeader,
        what: "approves or returns the Operativo process's drafts",
    },
    DemoLogin {
        email: "colaborador.operativo@demo.atiende.co",
        role: Role::Collaborator,
        what: "drafts answers for the Operativo process",
    },
    DemoLogin {
        email: "tecnico@demo.atiende.co",
        role: Role::Technician,
        what: "field visits (offline sync)",
    },
    DemoLogin {
        email: "admin@demo.atiende.co",
        role: Role::Admin,
        what: "users, processes, calendar",
    },
    DemoLogin {
        email: "cliente@demo.atiende.co",
        role: Role::Customer,
        what: "files PQRS and rates answers",
    },
];

/// A fresh random password: demo servers are often reachable by others, so no two demo users,
/// and no two installations, share one.
fn random_password() -> String {
    let random = Uuid::new_v4().simple().to_string();
    format!("demo-{}", &random[..20])
}

/// Loads the demo organisation unless it is already there. Returns each demo user's password
/// (in the order of [`LOGINS`]) when it loaded it; they are stored only as hashes, so this is the
/// one chance to print them.
pub async fn load(pool: &PgPool, hashing: &Hashing) -> atiende_core::Result<Option<Vec<String>>> {
    if auth::find_user_by_email(pool, LOGINS[0].email)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let passwords: Vec<String> = LOGINS.iter().map(|_| random_password()).collect();
    let password = |i: usize| Password::parse(passwords[i].clone());
    for (code, name) in [
        ("COMERCIAL", "Comercial"),
        ("OPERATIVO", "Operativo"),
        ("ATENCION_CLIENTE", "Atención al Cliente"),
    ] {
        if atiende_core::processes::find(pool, code).await?.is_none() {
            admin::add_process(pool, code, name, None).await?;
        }
    }
    let staff = [
        (
            LOGINS[0].email,
            "Dirección SIG",
            Role::QualityDirector,
            None,
        ),
        (
            LOGINS[1].email,
            "Laura Gómez",
            Role::ProcessLeader,
            Some("OPERATIVO"),
        ),
        (
            LOGINS[2].email,
            "Andrés Pérez",
            Role::Collaborator,
            Some("OPERATIVO"),
        ),
        (LOGINS[3].email, "Carlos Ruiz", Role::Technician, None),
        (LOGINS[4].email, "Administración", Role::Admin, None),
    ];
    let mut users = Vec::new();
    for (i, (email, name, role, process)) in staff.into_iter().enumerate() {
        let req = UserAdd {
            email: email.into(),
            name: name.into(),
            role,
            process: process.map(Into::into),
            language: "es".into(),
        };
        users.push(admin::add_user(pool, hashing, req, password(i)?).await?);
    }
    let customer = auth::register_customer(
        pool,
        hashing,
        Registration {
            email: LOGINS[5].email.into(),
            password: password(5)?,
            name: "Hotel Las Palmas S.A.S.".into(),
            phone: Some("+573001234567".into()),
            document_type: DocumentType::Nit,
            document_number: "900123456-7".into(),
            accept_data_policy: true,
            language: "es".into(),
        },
        "app",
    )
    .await?;
    let customer_id = customer.customer_id.ok_or_else(|| {
        atiende_core::Error::Internal("demo customer without a customer record".into())
    })?;
    let (director, leader, collaborator) = (&users[0], &users[1], &users[2]);

    let file = |case_type, subject: &str, description: &str| NewCase {
        id: Uuid::new_v4(),
        case_type,
        subject: subject.into(),
        description: description.into(),
        channel: Channel::App,
        chat_id: None,
        work_order_id: None,
    };
    let id_of = |f: cases::Filed| match f {
        cases::Filed::Created(c) | cases::Filed::Existing(c) => c.id,
    };
    // Received, waiting for the quality director.
    cases::file(
        pool,
        customer_id,
        Some(&customer),
        file(
            CaseType::Peticion,
            "Certificado de fumigación",
            "Solicito el certificado de la fumigación del mes pasado para la auditoría sanitaria.",
        ),
    )
    .await?;
    // Assigned to Operativo.
    let assigned = id_of(
        cases::file(
            pool,
            customer_id,
            Some(&customer),
            file(
                CaseType::Queja,
                "Técnico llegó tarde",
                "El técnico llegó dos horas después de la hora programada.",
            ),
        )
        .await?,
    );
    let assignment = || Assignment {
        process: "OPERATIVO".into(),
        assignee: Some(collaborator.id),
        impact: Level::Medium,
        urgency: Level::High,
    };
    cases::assign(pool, director, assigned, assignment()).await?;
    // A draft waiting for the leader's approval.
    let in_approval = id_of(
        cases::file(
            pool,
            customer_id,
            Some(&customer),
            file(
                CaseType::Reclamo,
                "Plaga persiste en cocina",
                "Después del servicio siguen apareciendo cucarachas en la cocina.",
            ),
        )
        .await?,
    );
    cases::assign(pool, director, in_approval, assignment()).await?;
    cases::draft(
        pool,
        collaborator,
        in_approval,
        "Programamos una visita de refuerzo sin costo para el próximo martes.",
    )
    .await?;
    // Answered, ready for the customer to rate.
    let answered = id_of(
        cases::file(
            pool,
            customer_id,
            Some(&customer),
            file(
                CaseType::Sugerencia,
                "Aviso previo por WhatsApp",
                "Sería útil recibir un aviso por WhatsApp el día anterior a la visita.",
            ),
        )
        .await?,
    );
    cases::assign(pool, director, answered, assignment()).await?;
    cases::draft(
        pool,
        collaborator,
        answered,
        "Gracias por la sugerencia: desde este mes enviamos el aviso un día antes.",
    )
    .await?;
    cases::approve(pool, leader, answered, None).await?;
    cases::close(
        pool,
        director,
        answered,
        Closing {
            in_favor_of_customer: true,
            outcome: Some("Sugerencia implementada".into()),
        },
    )
    .await?;
    // Tomorrow's visit for the technician, whose field report the app syncs offline.
    atiende_core::work_orders::create(
        pool,
        director,
        atiende_core::work_orders::NewWorkOrder {
            customer_id,
            process: "OPERATIVO".into(),
            address: "Carrera 1 # 2-34, Cartagena".into(),
            scheduled_at: chrono::Utc::now() + chrono::Duration::days(1),
            service_type: "Control de plagas".into(),
            technicians: vec![users[3].id],
        },
    )
    .await?;
    Ok(Some(passwords))
}

/// What to print after loading, so a person knows how to log in: the passwords when they were
/// just made (`passwords`, in the order of [`LOGINS`]), only the e-mails afterwards.
pub fn instructions(base_url: &str, passwords: Option<&[String]>) -> String {
    let mut out = match passwords {
        Some(_) => "Demo organisation loaded. Each user's password is shown now and never again:\n"
            .to_owned(),
        None => {
            "The demo organisation was already loaded; its passwords were shown then.\n".to_owned()
        }
    };
    for (i, l) in LOGINS.iter().enumerate() {
        let password = passwords.and_then(|p| p.get(i)).map_or("", String::as_str);
        out.push_str(&format!(
            "  {:<40} {:<17} {:<26} {}\n",
            l.email,
            l.role.as_str(),
            password,
            l.what
        ));
    }
    let example = passwords
        .and_then(|p| p.get(5))
        .map_or("<password>", String::as_str);
    out.push_str(&format!(
        "Log in:  curl -s {base_url}/api/v1/auth/login -H 'content-type: application/json' \\\n           -d '{{\"email\":\"{}\",\"password\":\"{example}\"}}'\n",
        LOGINS[5].email
    ));
    out.push_str(&format!(
        "API description: {base_url}/api/v1/openapi.json\n"
    ));
    out
}
