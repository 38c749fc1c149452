"""A faithful local fake of the Power Platform APIs the job uses.

Identity (OIDC discovery + token endpoint), BAP environment discovery, the Power Apps admin
connections API, the Dataverse Web API tables and functions, and Graph ``sendMail``; served
over HTTPS on loopback with a CA it generates. The pipeline never imports this package: the
real clients talk to it over the network exactly as they would to the cloud.
"""
