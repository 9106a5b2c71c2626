package policy

// policy1002 is the text of ImagineIF Libraries Policy 1002, as the library publishes it,
// against which clause texts are checked word for word.
const policy1002 = `
IMAGINEIF LIBRARIES

POLICY 1002: CONFIDENTIALITY OF LIBRARY RECORDS

Confidentiality of library use is essential to ensure citizens’ freedom to access information.

The purpose of this policy is to safeguard the privacy of those who use ImagineIF Libraries.

The topics covered in this policy include, but are not limited to, library card registration

data, circulation records, library visits and/or any data that contains information that links a

specific customer to specific materials or services used.

INFORMATION COLLECTED BY IMAGINEIF LIBRARIES

Individuals may choose to share personal information, such as names, email addresses,

postal addresses and telephone numbers in order to receive certain library services, such as

registering for library cards, accessing Montana Shared Catalog Partners Resource Sharing

Group materials or interlibrary loans, or receiving personal responses to questions.

Information about individuals’ borrowing history, computer use or other library use will not

be kept by ImagineIF, except as necessary for the library to function. Once borrowing

transactions are complete, information linking individuals and items is automatically

expunged except for the purposes of fine and/or materials collection. ImagineIF does not

track individuals’ internet use or electronic resources accessed. Aggregate statistics about

library programming, computer use, materials circulation and other services are collected

and reviewed in order to improve and expand library services; these statistics to not contain

personally identifying information.

ACCESS TO LIBRARY ACCOUNTS BY INDIVIDUALS

Each customer has individual control over his or her library card, and presentation of the

card or card number permits the holder access to information about the borrower’s current

circulation record. In order to ensure confidentiality, lost or stolen cards should be reported

to ImagineIF Libraries immediately. Information about a borrower’s circulation record also

may be released to the borrower in person, upon presentation of photo ID and verification

of date of birth.

If a library cardholder is under the age of 18, the caregiver who signed for the child’s card

may be given specific information regarding the child’s record under the following

circumstances. If the caregiver is in possession of the child’s card, they may be given any

information in the child’s record. If the child’s card is not present, information will be

provided to the caregiver listed on the library account upon presentation of photo

identification, and will be limited to materials that are overdue, lost or damaged, or related

to fines owed.

In compliance with the Montana Records Confidentiality Act (MCA 22-1-1101, 1103-1111),

no information will be released to any person, agency or organization except in response to

a valid court order or subpoena, properly presented to a library administrator, or in the

recovery of library materials and fines. Any employee or volunteer who discloses

information in violation of this policy commits an offense and may be subject to criminal

prosecution. The intent of the law is not to withhold information, obstruct just or protect

criminals, but to ensure that a citizen’s right to privacy is not violated.

THIRD-PARTY ACCESS TO LIBRARY RECORDS

ImagineIF Libraries partner with some third-party vendors to provide additional library

services, such as database access and downloadable media. Customers who choose to use

these services are encouraged to learn about the privacy policies of those service providers.

ImagineIF seeks reputable and responsible partners, but the privacy policies of these
partners vary. ImagineIF is not responsible for protecting personal information garnered by

outside websites.

ImagineIF Libraries may use third-party agencies to recover materials from borrowers.

ACTIVITIES PROHIBITED AND NOT PROTECTED

This policy does not prevent the library from exercising its rights to enforce the library

Customer Conduct policy; to protect its facilities, computer network and equipment from

harm; or to prevent the use of library facilities and equipment for illegal purposes.

Additional information may be collected on an individual basis to ensure the proper

functioning of the library. In these cases, information will be kept confidential unless

ImagineIF finds it necessary to take legal action.
`
