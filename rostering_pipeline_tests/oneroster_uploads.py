"""A small OneRoster 1.1 CSV bulk set: the same LEA, people and classes as `uploads.day_one`,
as an SIS would export them (plus one scheduled class and a co-teacher)."""

from __future__ import annotations

import io
import zipfile

MANIFEST = (
    "propertyName,value\n"
    "manifest.version,1.0\n"
    "oneroster.version,1.1\n"
    "file.academicSessions,bulk\n"
    "file.categories,absent\n"
    "file.classes,bulk\n"
    "file.classResources,absent\n"
    "file.courses,absent\n"
    "file.courseResources,absent\n"
    "file.demographics,bulk\n"
    "file.enrollments,bulk\n"
    "file.lineItems,absent\n"
    "file.orgs,bulk\n"
    "file.resources,absent\n"
    "file.results,absent\n"
    "file.users,bulk\n"
    "source.systemName,Example SIS\n"
)
ORGS = (
    "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n"
    "D1,,,Example ISD,district,101912,\n"
    "O1,,,Lamar Elementary,school,101912001,D1\n"
    "O2,,,Travis Middle,school,101912002,D1\n"
)
USERS_HEADER = (
    "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,"
    "givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password\n"
)
USERS = USERS_HEADER + (
    'T1,,,true,"D1,O1",teacher,areyes,,Ana,Reyes,,,ana.reyes@example.org,,,,,\n'
    "T2,,,true,O2,teacher,bcole,,Ben,Cole,,,ben.cole@example.org,,,,,\n"
    "S1,,,true,O1,student,luz,{TX:1234567890},Luz,Peña,María,,,,,,04,\n"
    "S2,,,true,O1,student,max,,Max,Ortiz,,,,,,,04,\n"
    "S3,,,true,O2,student,ivy,,Ivy,Nguyen,,,,,,,07,\n"
)
DEMOGRAPHICS = (
    "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,"
    "blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,"
    "demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,"
    "stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus\n"
    "S1,,,2016-03-04,female,,,,,,,true,,,,\n"
    "S2,,,2016-05-06,male,,,,,,,,,,,\n"
    "S3,,,2013-07-08,female,,,,,,,,,,,\n"
)
CLASSES = (
    "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,"
    "location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods\n"
    "C1,,,Grade 4 Math,04,,,homeroom,,O1,Y1,,,\n"
    "C2,,,Grade 7 Science,07,,,homeroom,,O2,Y1,,,\n"
    'C9,,,Band,"07,08",,,scheduled,,O2,Y1,,,\n'
)
ENROLLMENTS = (
    "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,"
    "primary,beginDate,endDate\n"
    "E1,,,C1,O1,T1,teacher,true,,\n"
    "E2,,,C2,O2,T2,teacher,true,,\n"
    "E3,,,C1,O1,S1,student,false,,\n"
    "E4,,,C1,O1,S2,student,false,,\n"
    "E5,,,C2,O2,S3,student,false,,\n"
    "E6,,,C9,O2,S3,student,false,,\n"
    "E7,,,C1,O1,T2,teacher,false,,\n"
)
SESSIONS = (
    "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n"
    "Y1,,,2026-2027,schoolYear,2026-08-15,2027-06-01,,2027\n"
)


def oneroster_day_one() -> dict[str, str]:
    return {
        "manifest.csv": MANIFEST,
        "orgs.csv": ORGS,
        "users.csv": USERS,
        "demographics.csv": DEMOGRAPHICS,
        "classes.csv": CLASSES,
        "enrollments.csv": ENROLLMENTS,
        "academicSessions.csv": SESSIONS,
    }


def zipped(files: dict[str, str | bytes], folder: str = "") -> bytes:
    """The files in one .zip, optionally inside a folder as some SIS export them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(folder + name, content)
    return buffer.getvalue()


def oneroster_for(lea: str, **replace: tuple[str, str]) -> dict[str, str]:
    """`oneroster_day_one` moved to `lea` (its campus numbers and its staff's own email
    domain: a login another LEA holds is a rejection), with (old, new) text replaced per
    file (`users_csv=("old", "new")`)."""
    files = {
        name: text.replace("101912", lea).replace("@example.org", f"@{lea}.example.org")
        for name, text in oneroster_day_one().items()
    }
    for name, (old, new) in replace.items():
        file = name.replace("_csv", ".csv")
        assert old in files[file], (file, old)
        files[file] = files[file].replace(old, new)
    return files
