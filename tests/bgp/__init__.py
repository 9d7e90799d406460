"""Active-active directors announcing their VIP over BGP to a real router doing ECMP (issue 15)."""
