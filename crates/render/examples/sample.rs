//! Writes a sample extract (PDF), its QR code (SVG, PNG) and a Code 128 barcode (SVG) into the
//! directory given as the first argument (default: the current directory):
//!
//! ```sh
//! cargo run -p esocial-render --example sample -- /tmp/esocial-sample
//! ```

use std::path::PathBuf;

use esocial_render::{Document, code128_svg, pdf, qr_png, qr_svg};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    let payload = "https://esocial.gov.ua/verify/ВД-2025-000123?h=3f9a1c";
    std::fs::write(dir.join("extract.pdf"), pdf(&sample(payload))?)?;
    std::fs::write(dir.join("qr.svg"), qr_svg(payload)?)?;
    std::fs::write(dir.join("qr.png"), qr_png(payload, 4)?)?;
    std::fs::write(dir.join("code128.svg"), code128_svg("3300912347")?)?;
    Ok(())
}

/// An extract from the register, in the shape the services produce.
fn sample(payload: &str) -> Document {
    let fields = [
        ("Прізвище, ім’я, по батькові", "Коваленко Олена Петрівна"),
        ("Дата народження", "14.03.1987"),
        ("РНОКПП", "3300912347"),
        ("Документ, що посвідчує особу", "Паспорт громадянина України № 004512378"),
        ("Адреса фактичного місця проживання", "м. Київ, вул. Ґонти, буд. 5, кв. 12"),
        ("Категорія", "Внутрішньо переміщена особа"),
        ("Розмір допомоги", "3 000,00 ₴ на місяць"),
    ];
    Document {
        title: "Витяг з Єдиного державного реєстру соціальної сфери".into(),
        subtitle: Some("№ ВД-2025-000123 від 14.11.2025".into()),
        fields: fields.iter().map(|&(label, value)| (label.into(), value.into())).collect(),
        paragraphs: vec![
            "Відомості про особу внесено до реєстру на підставі заяви, поданої через «Єдиний державний \
             вебпортал електронних послуг». Об’єднання даних з’ясовано; ґрунтовні зміни вносяться \
             лише за зверненням особи. Їхні пам’ятки, п’ятниця, сімʼя, єдність, Ґалаґан. Інформацію надано безоплатно."
                .into(),
            "Витяг сформовано автоматично. Справжність документа можна перевірити за QR-кодом.".into(),
        ],
        footer: "Мінсоцполітики України · Єдиний державний реєстр соціальної сфери".into(),
        qr_payload: Some(payload.into()),
    }
}
