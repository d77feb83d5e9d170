//! Deterministic generation of attendee personal data (names, emails,
//! phones, form answers). Nothing here is stored: a persona is re-derived
//! from its seed whenever a record is rendered, which keeps the per-attendee
//! state tiny.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Which registration form an event uses; decides the questions asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FormKind {
    /// "Registration: Individual"-style forms: the full questionnaire.
    Individual,
    /// Corporate tickets: also asks for an invoice address and tax id.
    Corporate,
    /// Reserved (speaker / sponsor) tickets: a short form.
    Reserved,
    /// Anything else (meetups, sprints): contact plus a couple of questions.
    Meetup,
}

impl FormKind {
    pub(crate) fn for_event_name(name: &str) -> Self {
        if name.contains("Corporate") {
            Self::Corporate
        } else if name.contains("Reserved") {
            Self::Reserved
        } else if name.contains("Registration") {
            Self::Individual
        } else {
            Self::Meetup
        }
    }
}

pub(crate) const LABEL_NAME: &str = "聯絡人 姓名";
pub(crate) const LABEL_EMAIL: &str = "聯絡人 Email";
pub(crate) const LABEL_PHONE: &str = "聯絡人 手機";
pub(crate) const LABEL_ADDRESS: &str = "Address / 發票地址";

/// A fully rendered persona.
#[derive(Debug, Clone)]
pub(crate) struct Persona {
    pub name: String,
    pub email: String,
    pub phone: String,
    pub address: Option<String>,
    pub checkin_code: String,
    pub qrcode: String,
    /// `[label, answer]` pairs, contact fields first.
    pub data: Vec<(&'static str, String)>,
}

impl Persona {
    /// KKTIX-like search string: name, email and phone concatenated.
    pub(crate) fn search_string(&self) -> String {
        format!("{} {} {}", self.name, self.email, self.phone)
    }
}

/// One part of a name with its ASCII romanisation (used for emails).
type Part = (&'static str, &'static str);

const ZH_FAMILY: &[Part] = &[
    ("王", "wang"),
    ("陳", "chen"),
    ("林", "lin"),
    ("黃", "huang"),
    ("張", "chang"),
    ("李", "li"),
    ("吳", "wu"),
    ("劉", "liu"),
    ("蔡", "tsai"),
    ("楊", "yang"),
    ("許", "hsu"),
    ("鄭", "cheng"),
    ("謝", "hsieh"),
    ("郭", "kuo"),
    ("洪", "hung"),
    ("曾", "tseng"),
    ("歐陽", "ouyang"),
];
const ZH_GIVEN: &[Part] = &[
    ("小明", "hsiaoming"),
    ("怡君", "yichun"),
    ("雅婷", "yating"),
    ("志豪", "chihhao"),
    ("家豪", "chiahao"),
    ("淑芬", "shufen"),
    ("冠宇", "kuanyu"),
    ("宜庭", "yiting"),
    ("承恩", "chengen"),
    ("詩涵", "shihhan"),
    ("俊傑", "chunchieh"),
    ("佩珊", "peishan"),
    ("安", "an"),
    ("喆", "che"),
    ("柏翰", "pohan"),
    ("品妍", "pinyen"),
];
const JA_FAMILY: &[Part] = &[
    ("佐藤", "sato"),
    ("鈴木", "suzuki"),
    ("高橋", "takahashi"),
    ("田中", "tanaka"),
    ("山本", "yamamoto"),
    ("渡辺", "watanabe"),
];
const JA_GIVEN: &[Part] = &[
    ("花子", "hanako"),
    ("一郎", "ichiro"),
    ("健太", "kenta"),
    ("さくら", "sakura"),
    ("ゆい", "yui"),
    ("翔", "sho"),
];
const KO_FAMILY: &[Part] = &[
    ("김", "kim"),
    ("이", "lee"),
    ("박", "park"),
    ("최", "choi"),
    ("정", "jung"),
];
const KO_GIVEN: &[Part] = &[
    ("민준", "minjun"),
    ("서연", "seoyeon"),
    ("지훈", "jihoon"),
    ("수아", "sua"),
    ("하은", "haeun"),
];
const LATIN_GIVEN: &[Part] = &[
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("François", "francois"),
    ("Łukasz", "lukasz"),
    ("Søren", "soren"),
    ("Ana", "ana"),
    ("Björn", "bjorn"),
    ("Renée", "renee"),
    ("Chloé", "chloe"),
];
const LATIN_FAMILY: &[Part] = &[
    ("Álvarez", "alvarez"),
    ("Müller", "muller"),
    ("Dubois", "dubois"),
    ("Wójcik", "wojcik"),
    ("Østergaard", "ostergaard"),
    ("Conceição", "conceicao"),
    ("Ångström", "angstrom"),
    ("Nguyễn", "nguyen"),
    ("Núñez", "nunez"),
];
const EN_GIVEN: &[Part] = &[
    ("Alice", "alice"),
    ("Brian", "brian"),
    ("Emily", "emily"),
    ("Michael", "michael"),
    ("Grace", "grace"),
    ("Daniel", "daniel"),
    ("Olivia", "olivia"),
    ("James", "james"),
];
const EN_FAMILY: &[Part] = &[
    ("Smith", "smith"),
    ("Johnson", "johnson"),
    ("O'Brien", "obrien"),
    ("Clarke", "clarke"),
    ("Wilson", "wilson"),
    ("Lee", "lee"),
    ("Taylor", "taylor"),
    ("Anderson-Wu", "andersonwu"),
];

const DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];

const NICKNAMES: &[&str] = &[
    "Yiting",
    "阿傑",
    "Kuma 🐻",
    "pyladies",
    "snake_charmer",
    "小魚",
    "Ken",
    "たなか",
    "민준",
    "Bob the builder",
    "Mr. Pickle",
    "貓奴",
];
const GENDERS: &[&str] = &["Male / 男性", "Female / 女性", "Prefer not to say / 不透露"];
const TSHIRT: &[&str] = &["XS", "S", "M", "L", "XL", "2XL", "3XL"];
const DIET: &[&str] = &[
    "Normal / 葷食",
    "Normal / 葷食",
    "Vegetarian / 素食",
    "Vegan / 全素",
    "No beef / 不吃牛",
];
const PY_YEARS: &[&str] = &[
    "< 1 year / 未滿一年",
    "1-3 years / 1-3 年",
    "3-5 years / 3-5 年",
    "5-10 years / 5-10 年",
    "> 10 years / 10 年以上",
];
const JOBS: &[&str] = &[
    "Software Engineer",
    "Data Scientist",
    "學生",
    "Backend Engineer / 後端工程師",
    "研究助理",
    "CTO",
    "SRE",
    "",
];
const COMPANIES: &[&str] = &[
    "Acme Corp.",
    "台灣積體電路製造股份有限公司",
    "國立臺灣大學",
    "Freelancer",
    "Example Inc.",
    "中央研究院",
    "",
];
const CORPORATE_COMPANIES: &[&str] = &[
    "Acme Corp.",
    "台灣積體電路製造股份有限公司",
    "Example Inc.",
    "好棒棒科技有限公司",
    "Snake Oil Ltd. 蛇油有限公司",
];
const SPRINT_PROJECTS: &[&str] = &[
    "CPython",
    "pandas",
    "Django",
    "PyCon TW website",
    "",
    "還沒決定",
];

/// (zip, city + district)
const DISTRICTS: &[(&str, &str)] = &[
    ("110", "臺北市信義區"),
    ("104", "臺北市中山區"),
    ("106", "臺北市大安區"),
    ("300", "新竹市東區"),
    ("220", "新北市板橋區"),
    ("407", "臺中市西屯區"),
    ("701", "臺南市東區"),
    ("806", "高雄市前鎮區"),
];
const ROADS: &[&str] = &[
    "信義路五段",
    "南京東路三段",
    "復興南路一段",
    "光復路二段",
    "文化路一段",
    "臺灣大道三段",
    "大學路",
    "中山二路",
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    // All pools above are non-empty constants.
    &items[rng.random_range(0..items.len())]
}

fn pick_str(rng: &mut StdRng, items: &[&'static str]) -> &'static str {
    items[rng.random_range(0..items.len())]
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn hex(rng: &mut StdRng, len: usize, upper: bool) -> String {
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let table = if upper { UPPER } else { LOWER };
    (0..len)
        .map(|_| char::from(table[rng.random_range(0..16)]))
        .collect()
}

fn address(rng: &mut StdRng) -> String {
    let (zip, district) = *pick(rng, DISTRICTS);
    let road = pick_str(rng, ROADS);
    let number = rng.random_range(1..400u32);
    if rng.random_bool(0.6) {
        let floor = rng.random_range(2..30u32);
        format!("{zip} {district}{road}{number}號{floor}樓")
    } else {
        format!("{zip}{district}{road}{number}號")
    }
}

/// A ticket's own check-in code and QR code, for a later ticket of an order.
pub(crate) fn ticket_codes(seed: u64) -> (String, String) {
    let mut rng = StdRng::seed_from_u64(seed);
    (hex(&mut rng, 4, true), hex(&mut rng, 32, false))
}

/// Derive a persona. `unique` must be unique per attendee (it goes into the
/// email so every attendee has a distinct address).
pub(crate) fn persona(seed: u64, unique: u64, form: FormKind) -> Persona {
    let mut rng = StdRng::seed_from_u64(seed);
    let roll: f64 = rng.random();
    let (family, given) = if roll < 0.62 {
        (*pick(&mut rng, ZH_FAMILY), *pick(&mut rng, ZH_GIVEN))
    } else if roll < 0.70 {
        (*pick(&mut rng, JA_FAMILY), *pick(&mut rng, JA_GIVEN))
    } else if roll < 0.76 {
        (*pick(&mut rng, KO_FAMILY), *pick(&mut rng, KO_GIVEN))
    } else if roll < 0.86 {
        (*pick(&mut rng, LATIN_FAMILY), *pick(&mut rng, LATIN_GIVEN))
    } else {
        (*pick(&mut rng, EN_FAMILY), *pick(&mut rng, EN_GIVEN))
    };
    let name = if roll < 0.62 {
        if rng.random_bool(0.1) {
            // Some Taiwanese attendees register with their romanised name.
            format!("{} {}", capitalize(given.1), capitalize(family.1))
        } else {
            format!("{}{}", family.0, given.0)
        }
    } else if roll < 0.70 {
        format!("{} {}", family.0, given.0)
    } else if roll < 0.76 {
        format!("{}{}", family.0, given.0)
    } else {
        format!("{} {}", given.0, family.0)
    };

    let local = match rng.random_range(0..4u8) {
        0 => format!("{}.{}", given.1, family.1),
        1 => format!("{}.{}", family.1, given.1),
        2 => format!("{}_{}", given.1, family.1),
        _ => format!("{}{}", &given.1[..1], family.1),
    };
    let domain = pick_str(&mut rng, DOMAINS);
    let email = format!("{local}+{unique}@{domain}");
    let phone = format!("09{:08}", rng.random_range(0..100_000_000u32));
    let checkin_code = hex(&mut rng, 4, true);
    let qrcode = hex(&mut rng, 32, false);

    let mut data: Vec<(&'static str, String)> = vec![
        (LABEL_NAME, name.clone()),
        (LABEL_EMAIL, email.clone()),
        (LABEL_PHONE, phone.clone()),
    ];
    let nickname = if rng.random_bool(0.3) {
        String::new()
    } else {
        pick_str(&mut rng, NICKNAMES).to_owned()
    };
    data.push(("Nickname / 暱稱", nickname));
    let mut address_value = None;
    match form {
        FormKind::Individual | FormKind::Corporate => {
            data.push(("Gender / 生理性別", pick_str(&mut rng, GENDERS).into()));
            data.push(("T-shirt Size / T恤尺寸", pick_str(&mut rng, TSHIRT).into()));
            data.push(("Dietary Habit / 餐點偏好", pick_str(&mut rng, DIET).into()));
            data.push((
                "Years of Using Python / 使用 Python 的年資",
                pick_str(&mut rng, PY_YEARS).into(),
            ));
            data.push(("Job Title / 職稱", pick_str(&mut rng, JOBS).into()));
            if form == FormKind::Corporate {
                data.push((
                    "Company / 公司",
                    pick_str(&mut rng, CORPORATE_COMPANIES).into(),
                ));
                data.push((
                    "Tax ID Number / 統一編號",
                    format!("{:08}", rng.random_range(10_000_000..100_000_000u32)),
                ));
                let addr = address(&mut rng);
                data.push((LABEL_ADDRESS, addr.clone()));
                address_value = Some(addr);
            } else {
                data.push(("Company / 公司", pick_str(&mut rng, COMPANIES).into()));
            }
        }
        FormKind::Reserved => {
            data.push(("T-shirt Size / T恤尺寸", pick_str(&mut rng, TSHIRT).into()));
            data.push(("Dietary Habit / 餐點偏好", pick_str(&mut rng, DIET).into()));
        }
        FormKind::Meetup => {
            data.push((
                "Sprint Project / 想參與的專案",
                pick_str(&mut rng, SPRINT_PROJECTS).into(),
            ));
        }
    }

    Persona {
        name,
        email,
        phone,
        address: address_value,
        checkin_code,
        qrcode,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persona_is_deterministic_and_well_formed() {
        for seed in 0..500u64 {
            let a = persona(seed, seed + 1, FormKind::Corporate);
            let b = persona(seed, seed + 1, FormKind::Corporate);
            assert_eq!(a.data, b.data);
            assert_eq!(a.data[0].0, LABEL_NAME);
            assert_eq!(a.data[1].0, LABEL_EMAIL);
            assert_eq!(a.data[2].0, LABEL_PHONE);
            assert!(a.email.is_ascii());
            assert!(
                a.email.ends_with(".com") || a.email.ends_with(".org") || a.email.ends_with(".net")
            );
            assert!(a.email.contains(&format!("+{}@", seed + 1)));
            assert_eq!(a.phone.len(), 10);
            assert!(a.phone.starts_with("09"));
            assert!(a.phone.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(a.checkin_code.len(), 4);
            assert!(a
                .checkin_code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
            assert_eq!(a.qrcode.len(), 32);
            assert!(a.address.is_some());
            assert!(a
                .data
                .iter()
                .any(|(l, v)| l.contains("Address") && !v.is_empty()));
        }
    }

    #[test]
    fn form_kind_from_name() {
        assert_eq!(
            FormKind::for_event_name("PyCon Taiwan 2026 Registration: Corporate"),
            FormKind::Corporate
        );
        assert_eq!(
            FormKind::for_event_name("PyCon Taiwan 2026 Registration: Individual"),
            FormKind::Individual
        );
        assert_eq!(
            FormKind::for_event_name("PyCon Taiwan 2026 Sprint Meetup"),
            FormKind::Meetup
        );
        let p = persona(7, 1, FormKind::Individual);
        assert!(p.address.is_none());
        assert!(!p.data.iter().any(|(l, _)| l.contains("Address")));
    }
}
